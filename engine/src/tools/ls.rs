//! `thin_ls` 0.9.0 table formatting (spec §10.4), byte for byte.
//!
//! Input is one [`LsRow`] per device (ascending id, as the tool walks the details tree) and the
//! pool's data block size in sectors. Arithmetic follows the tool's unsigned 64-bit wrapping:
//! shared = mapped − exclusive, sectors = blocks × data_block_size, bytes = sectors × 512.
//!
//! Layout: a header row of field names (unless `--no-headers`), then one row per device. Every
//! cell is right-aligned to its column's widest cell and followed by one space (so each line
//! ends with a space); rows are separated by `\n` and the output ends with `\n`. With no
//! fields at all, or with neither headers nor devices, the output is empty.

use std::fmt;

/// The columns `thin_ls -o` knows, in the tool's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LsField {
    Dev,
    MappedBlocks,
    ExclusiveBlocks,
    SharedBlocks,
    MappedSectors,
    ExclusiveSectors,
    SharedSectors,
    MappedBytes,
    ExclusiveBytes,
    SharedBytes,
    Mapped,
    Exclusive,
    Shared,
    Transaction,
    CreateTime,
    SnapTime,
    /// 1.x: the highest mapped virtual block (`-` for a device with no mappings).
    HighestBlock,
}

impl LsField {
    /// Every field, in the order of the tool's usage text.
    pub const ALL: [LsField; 16] = [
        LsField::Dev,
        LsField::MappedBlocks,
        LsField::ExclusiveBlocks,
        LsField::SharedBlocks,
        LsField::MappedSectors,
        LsField::ExclusiveSectors,
        LsField::SharedSectors,
        LsField::MappedBytes,
        LsField::ExclusiveBytes,
        LsField::SharedBytes,
        LsField::Mapped,
        LsField::Exclusive,
        LsField::Shared,
        LsField::Transaction,
        LsField::CreateTime,
        LsField::SnapTime,
    ];

    /// Every field thin_ls 1.x knows: 0.9.0's and `HIGHEST_BLOCK`.
    pub const ALL_1X: [LsField; 17] = {
        let mut all = [LsField::HighestBlock; 17];
        let mut i = 0;
        while i < 16 {
            all[i] = LsField::ALL[i];
            i += 1;
        }
        all
    };

    /// The columns printed without `-o`.
    pub const DEFAULT: [LsField; 4] =
        [LsField::Dev, LsField::Mapped, LsField::CreateTime, LsField::SnapTime];

    /// The header text, which is also the name `-o` takes.
    pub fn name(self) -> &'static str {
        match self {
            LsField::Dev => "DEV",
            LsField::MappedBlocks => "MAPPED_BLOCKS",
            LsField::ExclusiveBlocks => "EXCLUSIVE_BLOCKS",
            LsField::SharedBlocks => "SHARED_BLOCKS",
            LsField::MappedSectors => "MAPPED_SECTORS",
            LsField::ExclusiveSectors => "EXCLUSIVE_SECTORS",
            LsField::SharedSectors => "SHARED_SECTORS",
            LsField::MappedBytes => "MAPPED_BYTES",
            LsField::ExclusiveBytes => "EXCLUSIVE_BYTES",
            LsField::SharedBytes => "SHARED_BYTES",
            LsField::Mapped => "MAPPED",
            LsField::Exclusive => "EXCLUSIVE",
            LsField::Shared => "SHARED",
            LsField::Transaction => "TRANSACTION",
            LsField::CreateTime => "CREATE_TIME",
            LsField::SnapTime => "SNAP_TIME",
            LsField::HighestBlock => "HIGHEST_BLOCK",
        }
    }

    /// The field named exactly `name` (case-sensitive, as in the tool).
    pub fn from_name(name: &str) -> Option<LsField> {
        LsField::ALL_1X.into_iter().find(|f| f.name() == name)
    }

    /// True for the fields that need the exclusive count (the tool's extra pass).
    pub fn needs_exclusive(self) -> bool {
        !matches!(
            self,
            LsField::Dev
                | LsField::MappedBlocks
                | LsField::MappedSectors
                | LsField::MappedBytes
                | LsField::Mapped
                | LsField::Transaction
                | LsField::CreateTime
                | LsField::SnapTime
                | LsField::HighestBlock
        )
    }
}

/// A name in an `-o` list that is not a field (the tool says "unknown field").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField(pub String);

impl fmt::Display for UnknownField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown field {:?}", self.0)
    }
}

impl std::error::Error for UnknownField {}

/// Parses an `-o` argument the way the tool splits it: on `,`, where an empty item in the
/// middle (or a lone `,`) is an unknown field, a single trailing comma adds nothing, and `""`
/// is no fields at all.
pub fn parse_fields(list: &str) -> Result<Vec<LsField>, UnknownField> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let body = list.strip_suffix(',').unwrap_or(list);
    body.split(',')
        .map(|item| LsField::from_name(item).ok_or_else(|| UnknownField(item.to_string())))
        .collect()
}

/// One device's numbers, as the tool gathers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LsRow {
    pub dev_id: u64,
    /// From the details entry (not recounted by 0.9.0).
    pub mapped_blocks: u64,
    /// Mappings of this device whose data block is mapped exactly once in the whole pool.
    pub exclusive_blocks: u64,
    pub transaction: u64,
    pub creation_time: u32,
    pub snap_time: u32,
    /// The highest mapped virtual block, None without mappings.
    pub highest_block: Option<u64>,
}

impl LsRow {
    /// The tool's `mapped_blocks − exclusive`, wrapping like its unsigned arithmetic.
    pub fn shared_blocks(&self) -> u64 {
        self.mapped_blocks.wrapping_sub(self.exclusive_blocks)
    }

    fn cell(&self, field: LsField, data_block_size: u64) -> String {
        let sectors = |blocks: u64| blocks.wrapping_mul(data_block_size);
        let bytes = |blocks: u64| sectors(blocks).wrapping_mul(SECTOR_BYTES);
        let (mapped, exclusive, shared) =
            (self.mapped_blocks, self.exclusive_blocks, self.shared_blocks());
        match field {
            LsField::Dev => self.dev_id.to_string(),
            LsField::MappedBlocks => mapped.to_string(),
            LsField::ExclusiveBlocks => exclusive.to_string(),
            LsField::SharedBlocks => shared.to_string(),
            LsField::MappedSectors => sectors(mapped).to_string(),
            LsField::ExclusiveSectors => sectors(exclusive).to_string(),
            LsField::SharedSectors => sectors(shared).to_string(),
            LsField::MappedBytes => bytes(mapped).to_string(),
            LsField::ExclusiveBytes => bytes(exclusive).to_string(),
            LsField::SharedBytes => bytes(shared).to_string(),
            LsField::Mapped => human_bytes(bytes(mapped)),
            LsField::Exclusive => human_bytes(bytes(exclusive)),
            LsField::Shared => human_bytes(bytes(shared)),
            LsField::Transaction => self.transaction.to_string(),
            LsField::CreateTime => self.creation_time.to_string(),
            LsField::SnapTime => self.snap_time.to_string(),
            LsField::HighestBlock => self.highest_block.map_or("-".into(), |b| b.to_string()),
        }
    }
}

const SECTOR_BYTES: u64 = 512;
const MIB: u64 = 1 << 20;
/// Above this many units after scaling, the tool rounds to the next unit.
const ROUND_ABOVE: u64 = 8 * 1024;
const UNIT_SUFFIXES: [&str; 7] = ["", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// The tool's human units: divide by 1024 (truncating) while the value exceeds 1 MiB; then, if
/// it still exceeds 8192, round to the nearest 1024 (halves away from zero) and go one unit up.
///
/// Above 2^63 bytes the tool indexes past its suffix table (undefined behaviour); this prints
/// `EiB` there.
pub fn human_bytes(bytes: u64) -> String {
    let mut value = bytes;
    let mut unit = 0;
    while value > MIB {
        value /= 1024;
        unit += 1;
    }
    if value > ROUND_ABOVE {
        value = (value + 512) / 1024;
        unit += 1;
    }
    // u64::MAX needs 4 divisions plus one rounding step: unit <= 6.
    let suffix = UNIT_SUFFIXES.get(unit).copied().unwrap_or("EiB");
    format!("{value}{suffix}")
}

/// The whole `thin_ls` output for `rows` with the given columns.
pub fn format_table(
    rows: &[LsRow],
    data_block_size: u32,
    fields: &[LsField],
    headers: bool,
) -> String {
    let mut grid: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    if headers {
        grid.push(fields.iter().map(|f| f.name().to_string()).collect());
    }
    let block_size = u64::from(data_block_size);
    grid.extend(rows.iter().map(|r| fields.iter().map(|&f| r.cell(f, block_size)).collect()));
    render(&grid, fields.len())
}

/// Right-aligns every column to its widest cell; one space after every cell.
fn render(grid: &[Vec<String>], columns: usize) -> String {
    if columns == 0 {
        return String::new();
    }
    let mut widths = vec![0usize; columns];
    for row in grid {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in grid {
        for (width, cell) in widths.iter().zip(row) {
            out.extend(std::iter::repeat_n(' ', width - cell.len()));
            out.push_str(cell);
            out.push(' ');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units_follow_the_tool() {
        assert_eq!(human_bytes(0), "0");
        assert_eq!(human_bytes(8192), "8192");
        assert_eq!(human_bytes(8193), "8KiB");
        assert_eq!(human_bytes(8704), "9KiB");
        assert_eq!(human_bytes(327_680), "320KiB");
        assert_eq!(human_bytes(MIB), "1024KiB");
        assert_eq!(human_bytes(MIB + 1), "1024KiB");
        assert_eq!(human_bytes(9 << 20), "9MiB");
        assert_eq!(human_bytes(u64::MAX), "16EiB");
    }

    #[test]
    fn fields_list_splits_like_getline() {
        assert_eq!(parse_fields(""), Ok(vec![]));
        assert_eq!(parse_fields("DEV,"), Ok(vec![LsField::Dev]));
        assert_eq!(parse_fields(","), Err(UnknownField(String::new())));
        assert_eq!(parse_fields("DEV,,MAPPED"), Err(UnknownField(String::new())));
        assert_eq!(parse_fields("dev"), Err(UnknownField("dev".into())));
        for f in LsField::ALL_1X {
            assert_eq!(LsField::from_name(f.name()), Some(f));
        }
        assert_eq!(&LsField::ALL_1X[..16], &LsField::ALL[..]);
        assert_eq!(LsField::ALL_1X[16], LsField::HighestBlock);
    }

    #[test]
    fn spec_example_table() {
        let rows = [
            LsRow {
                dev_id: 1,
                mapped_blocks: 5,
                creation_time: 0,
                snap_time: 1,
                ..LsRow::default()
            },
            LsRow {
                dev_id: 5,
                mapped_blocks: 2,
                creation_time: 1,
                snap_time: 1,
                ..LsRow::default()
            },
        ];
        let text = format_table(&rows, 128, &LsField::DEFAULT, true);
        assert_eq!(
            text,
            "DEV MAPPED CREATE_TIME SNAP_TIME \n  1 320KiB           0         1 \n  5 128KiB           1         1 \n"
        );
        assert_eq!(format_table(&[], 128, &LsField::DEFAULT, false), "");
        assert_eq!(format_table(&rows, 128, &[], true), "");
    }
}
