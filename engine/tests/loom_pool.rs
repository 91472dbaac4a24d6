//! Loom model of the pool lock: queries running concurrently with a mutator and a commit see
//! either the state before or the state after, never a mix, and nothing deadlocks.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test -p thinsim-engine --test loom_pool --release`

#![cfg(loom)]

use engine::io::MemoryDevice;
use engine::thin::{DataBlock, ThinId, TransactionId, VBlock};
use engine::thin::{Pool, PoolOptions};
use loom::sync::Arc;

fn pool() -> Pool {
    let pool = Pool::open(Box::new(MemoryDevice::new(64)), PoolOptions::new(128)).unwrap();
    pool.resize_data_dev(100).unwrap();
    pool.create_thin(ThinId(1)).unwrap();
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    // Each data block carries the reference insert_block hands to the mapping.
    pool.inc_data_range(DataBlock(7), DataBlock(10)).unwrap();
    pool.insert_block(&h, VBlock(0), DataBlock(7)).unwrap();
    pool.close_thin_device(h);
    pool.commit().unwrap();
    pool
}

#[test]
fn readers_see_before_or_after_a_writer() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        // The engine keeps 4 KiB blocks on the stack (a node being packed, a superblock),
        // so its frames are large; loom runs each thread on a small coroutine stack, and
        // how close a build comes to it moves with the compiler's inlining (a module added
        // elsewhere in the crate overflowed the model's main one). So the work runs on
        // threads given a thread's usual 8 MiB, the model's own thread only joining.
        big_stack(writer_and_reader).join().unwrap();
    });
}

fn big_stack<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> loom::thread::JoinHandle<T> {
    loom::thread::Builder::new().stack_size(8 << 20).spawn(f).expect("a loom thread")
}

fn writer_and_reader() {
    let pool = Arc::new(pool());
    let h = Arc::new(pool.open_thin_device(ThinId(1)).unwrap());
    let (p2, h2) = (pool.clone(), h.clone());
    let reader = big_stack(move || {
        let l = p2.find_block(&h2, VBlock(0), true).unwrap();
        let count = p2.get_mapped_count(&h2).unwrap();
        let tid = p2.get_transaction_id().unwrap();
        (l.data_block, count, tid)
    });
    pool.insert_block(&h, VBlock(1), DataBlock(8)).unwrap();
    pool.insert_block(&h, VBlock(0), DataBlock(9)).unwrap();
    pool.set_transaction_id(TransactionId(0), TransactionId(1)).unwrap();
    pool.commit().unwrap();
    let (block, count, tid) = reader.join().unwrap();
    assert!(block == DataBlock(7) || block == DataBlock(9), "reader saw data block {block}");
    assert!(count == 1 || count == 2, "reader saw {count} mappings");
    // The reader looked at block 0 before counting: having seen the writer's second
    // insert there, its later count must include the first.
    assert!(
        block == DataBlock(7) || count == 2,
        "saw the remap of block 0 but not the earlier insert"
    );
    assert!(tid <= TransactionId(1));
}
