//! Decoding on worker threads, results in submission order.
//!
//! Decoding is most of a replay's work and each chunk decodes on its own, so chunks decode in
//! parallel while the pipeline thread windows and runs SQL. The pipeline keeps a fixed number
//! of chunks in flight, which keeps its choices (which file to read next) independent of timing.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::{Decoded, Decoder};
use crate::source::Chunk;

type Task = (Chunk, Sender<Decoded>);

pub struct DecodePool {
    decoder: Arc<Decoder>,
    tasks: Option<Sender<Task>>,
    workers: Vec<JoinHandle<()>>,
}

/// A chunk being decoded.
pub enum Pending {
    Ready(Decoded),
    Waiting(Receiver<Decoded>),
}

impl Pending {
    pub fn wait(self) -> Decoded {
        match self {
            Pending::Ready(d) => d,
            Pending::Waiting(rx) => rx.recv().expect("a decode worker answers every task"),
        }
    }
}

/// One decode worker per core (at most eight): the reading thread's own work is the smaller part.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8)
}

impl DecodePool {
    /// `workers = 0` decodes on the caller's thread.
    pub fn new(decoder: Arc<Decoder>, workers: usize) -> Self {
        if workers == 0 {
            return DecodePool { decoder, tasks: None, workers: Vec::new() };
        }
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let handles = (0..workers)
            .map(|i| {
                let rx = rx.clone();
                let decoder = decoder.clone();
                std::thread::Builder::new()
                    .name(format!("osprey-decode-{i}"))
                    .spawn(move || loop {
                        let task = rx.lock().expect("not poisoned").recv();
                        let Ok((chunk, reply)) = task else { return };
                        let _ = reply.send(decoder.decode(chunk.partition, &chunk.payload));
                    })
                    .expect("a thread")
            })
            .collect();
        DecodePool { decoder, tasks: Some(tx), workers: handles }
    }

    /// Chunks to keep in flight: enough for the workers to decode ahead while the pipeline
    /// thread runs a window's SQL (four per worker: 7% faster replays than two, here; more
    /// only costs memory).
    pub fn depth(&self) -> usize {
        (self.workers.len() * 4).max(1)
    }

    pub fn submit(&self, chunk: Chunk) -> Pending {
        if let crate::source::Payload::Decoded { decoded, .. } = chunk.payload {
            return Pending::Ready(*decoded);
        }
        match &self.tasks {
            None => Pending::Ready(self.decoder.decode(chunk.partition, &chunk.payload)),
            Some(tasks) => {
                let (tx, rx) = mpsc::channel();
                tasks.send((chunk, tx)).expect("decode workers run until the pool is dropped");
                Pending::Waiting(rx)
            }
        }
    }
}

impl Drop for DecodePool {
    fn drop(&mut self) {
        self.tasks.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
