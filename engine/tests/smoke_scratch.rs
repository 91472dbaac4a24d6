use engine::io::{FileDevice, MemoryDevice};
use engine::thin::{Pool, PoolOptions};

#[test]
fn scratch() {
    let path = std::path::Path::new("/tmp/scratch.img");
    let dev = FileDevice::create(path, 1024).unwrap();
    let pool = Pool::open(Box::new(dev), PoolOptions::new(128)).unwrap();
    pool.resize_data_dev(50000).unwrap();
    pool.create_thin(1).unwrap();
    let h = pool.open_thin_device(1).unwrap();
    for v in 0..3000u64 {
        let d = pool.alloc_data_block().unwrap();
        pool.insert_block(&h, v * 7 % 3001, d).unwrap();
    }
    pool.commit().unwrap();
    if std::env::var("STOP").as_deref() == Ok("1") { pool.close_thin_device(h); let _ = pool.close().map_err(|e| format!("{e:?}")).unwrap(); return; }
    pool.create_snap(2, 1).unwrap();
    for v in 0..500u64 {
        let d = pool.alloc_data_block().unwrap();
        pool.insert_block(&h, v, d).unwrap();
    }
    pool.remove_range(&h, 1000, 1500).unwrap();
    pool.commit().unwrap();
    if std::env::var("STOP").as_deref() == Ok("2") { pool.close_thin_device(h); let _ = pool.close().map_err(|e| format!("{e:?}")).unwrap(); return; }
    pool.reserve_metadata_snap().unwrap();
    pool.remove_range(&h, 2000, 2200).unwrap();
    pool.commit().unwrap();
    pool.close_thin_device(h);
    let _ = pool.close().map_err(|e| format!("{e:?}")).unwrap();
    let _ = MemoryDevice::new(1);
}

#[test]
fn scratch_check() {
    let dev = FileDevice::open(std::path::Path::new("/tmp/scratch.img"), false).unwrap();
    let r = engine::thin::check::check(Box::new(dev));
    for f in &r.findings { println!("{f}"); }
    println!("devices {} mappings {} meta {} data {}", r.devices, r.mappings, r.metadata_blocks_used, r.data_blocks_used);
    assert!(r.is_clean());
}
