//! A bounded, single-consumer queue between the connection reader and one
//! subscription stream.
//!
//! The reader must never wait on a slow application (it also carries heartbeats
//! and replies), so at the bound (a count and a byte budget, weighed by
//! [`Weigh`]) the oldest message is evicted and counted.
//! Queue-group and direct deliveries never reach the bound: the broker sends no
//! more than the subscription's prefetch.
//!
//! The consuming stream ([`Inbox`]) takes everything buffered under one lock
//! and hands it out from its own queue, so a stream holds at most twice the
//! bound: one batch being consumed, one being filled.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// How many bytes an item is counted as against the mailbox's byte budget.
pub(crate) trait Weigh {
    fn weight(&self) -> usize;
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    bytes: usize,
    waker: Option<Waker>,
    closed: bool,
    dropped: u64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Mailbox<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    max_bytes: usize,
}

impl<T: Weigh> Mailbox<T> {
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            max_bytes,
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                waker: None,
                closed: false,
                dropped: 0,
            }),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the items of `run` in order (leaving it empty) under one lock and
    /// one wake-up, evicting the oldest at the bound (the newest item always
    /// stays). Dropped once closed. An empty mailbox takes the run's
    /// allocation as it is, without moving an item.
    ///
    /// What the count bound evicts goes before the run is added, so the
    /// queue never holds, nor grows its room to, more than the bound: a
    /// full mailbox that took a run first and evicted after would double
    /// its allocation at every bound past a power of two.
    pub fn push_run(&self, run: &mut VecDeque<T>) {
        let waker = {
            let mut st = self.lock();
            if st.closed {
                run.clear();
                return;
            }
            let bound = self.capacity.max(1);
            let over = (st.items.len() + run.len()).saturating_sub(bound);
            // The oldest first: those already here, then the run's own.
            let from_items = over.min(st.items.len());
            for _ in 0..from_items {
                let old = st.items.pop_front().expect("counted");
                st.bytes -= old.weight();
            }
            run.drain(..over - from_items);
            st.dropped += over as u64;
            let added: usize = run.iter().map(Weigh::weight).sum();
            if st.items.is_empty() {
                std::mem::swap(&mut st.items, run);
                // A run longer than the bound left its room behind.
                st.items.shrink_to(bound);
            } else {
                let needed = st.items.len() + run.len();
                if needed > st.items.capacity() {
                    // Doubling, as `append` would, but never past the bound.
                    let room = (st.items.capacity() * 2).clamp(needed, bound);
                    let len = st.items.len();
                    st.items.reserve_exact(room - len);
                }
                st.items.append(run);
            }
            st.bytes += added;
            while st.items.len() > 1 && st.bytes > self.max_bytes {
                let old = st.items.pop_front().expect("not empty");
                st.bytes -= old.weight();
                st.dropped += 1;
            }
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Ends the stream once the buffered items are taken.
    pub fn close(&self) {
        let waker = {
            let mut st = self.lock();
            st.closed = true;
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Items evicted at the bound so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Moves every buffered item into `batch` (which must be empty) under one
    /// lock: `Ready(true)` if there were any, `Ready(false)` once closed and
    /// empty; otherwise remembers the waker.
    fn poll_take(&self, cx: &mut Context<'_>, batch: &mut VecDeque<T>) -> Poll<bool> {
        let mut st = self.lock();
        if !st.items.is_empty() {
            // The emptied batch's allocation goes back to the producer.
            std::mem::swap(&mut st.items, batch);
            st.bytes = 0;
            return Poll::Ready(true);
        }
        if st.closed {
            return Poll::Ready(false);
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Items of room an emptied queue keeps when it goes back to the reader;
/// more is given back to the allocator.
const RETAINED_CAPACITY: usize = 1024;

/// The consuming end of a [`Mailbox`]: takes what is buffered a batch at a
/// time, then hands it out without locking.
#[derive(Debug)]
pub(crate) struct Inbox<T> {
    mailbox: Arc<Mailbox<T>>,
    batch: VecDeque<T>,
}

impl<T: Weigh> Inbox<T> {
    pub fn new(mailbox: Arc<Mailbox<T>>) -> Self {
        Self {
            mailbox,
            batch: VecDeque::new(),
        }
    }

    /// Items evicted at the mailbox's bound so far.
    pub fn dropped(&self) -> u64 {
        self.mailbox.dropped()
    }

    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.batch.is_empty() {
            // The queues go round (reader, mailbox, stream): one grown by a
            // burst is trimmed here before it goes round again.
            self.batch.shrink_to(RETAINED_CAPACITY);
            match self.mailbox.poll_take(cx, &mut self.batch) {
                Poll::Ready(true) => {}
                Poll::Ready(false) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(self.batch.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    impl Weigh for i32 {
        fn weight(&self) -> usize {
            10
        }
    }

    impl Mailbox<i32> {
        fn push_all<const N: usize>(&self, items: [i32; N]) {
            self.push_run(&mut VecDeque::from(items));
        }
    }

    fn inbox(mb: Mailbox<i32>) -> (Arc<Mailbox<i32>>, Inbox<i32>) {
        let mb = Arc::new(mb);
        (mb.clone(), Inbox::new(mb))
    }

    #[test]
    fn evicts_oldest_at_the_byte_budget() {
        let (mb, mut inbox) = inbox(Mailbox::new(100, 25));
        for i in 0..3 {
            mb.push_all([i]);
        }
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(inbox.dropped(), 1);
    }

    #[test]
    fn evicts_oldest_at_the_bound_and_ends_after_close() {
        let (mb, mut inbox) = inbox(Mailbox::new(2, usize::MAX));
        for i in 0..3 {
            mb.push_all([i]);
        }
        mb.close();
        mb.push_all([9]);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(Some(2)));
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(None));
        assert_eq!(inbox.dropped(), 1);
    }

    #[test]
    fn the_inbox_takes_a_batch_and_waits_when_empty() {
        let (mb, mut inbox) = inbox(Mailbox::new(3, usize::MAX));
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(inbox.poll_next(&mut cx), Poll::Pending);
        mb.push_all([1, 2]);
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(Some(1)));
        // Taken with 1: the mailbox has room for a full bound again.
        mb.push_all([3, 4, 5]);
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(Some(2)));
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(Some(3)));
        assert_eq!(inbox.dropped(), 0);
        mb.close();
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(Some(4)));
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(Some(5)));
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn push_all_keeps_order_and_the_bound() {
        let (mb, mut inbox) = inbox(Mailbox::new(3, usize::MAX));
        mb.push_all([1, 2]);
        mb.push_all([3, 4, 5]);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(Some(3)));
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(Some(4)));
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(Some(5)));
        assert_eq!(inbox.dropped(), 2);
    }

    #[test]
    fn a_full_mailbox_never_makes_room_for_more_than_its_bound() {
        let bound = 4096;
        let mb = Mailbox::new(bound, usize::MAX);
        // Runs of every size, as a reader's reads cut them, far past the bound.
        let sizes = [1usize, 7, 100, 255, 256, 1000, 3, 4095, 17, 5000, 64];
        for (i, n) in sizes.iter().cycle().take(60).enumerate() {
            let mut run: VecDeque<i32> = (0..*n).map(|k| (i * 10_000 + k) as i32).collect();
            mb.push_run(&mut run);
            let st = mb.lock();
            assert!(st.items.len() <= bound);
            assert!(
                st.items.capacity() <= bound,
                "room {} after a run of {n}",
                st.items.capacity()
            );
        }
        let st = mb.lock();
        assert_eq!(st.items.len(), bound);
        // The newest item is the last run's last.
        let last = 59 * 10_000 + sizes[59 % sizes.len()] - 1;
        assert_eq!(st.items.back(), Some(&(last as i32)));
    }

    /// An item that weighs what it says.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Weighted(u16);

    impl Weigh for Weighted {
        fn weight(&self) -> usize {
            usize::from(self.0)
        }
    }

    proptest::proptest! {
        /// Runs handed over at once keep exactly what pushing their items one
        /// by one would keep: the newest items within both bounds (the
        /// newest always), in order, the rest counted as dropped.
        #[test]
        fn runs_keep_what_item_by_item_pushes_keep(
            capacity in 1usize..8,
            max_bytes in 1usize..400,
            runs in proptest::collection::vec(proptest::collection::vec(0u16..100, 0..10), 0..8),
        ) {
            let mb = Mailbox::new(capacity, max_bytes);
            let mut model: VecDeque<Weighted> = VecDeque::new();
            let mut model_dropped = 0u64;
            for run in &runs {
                for &w in run {
                    let item = Weighted(w);
                    let weight = |m: &VecDeque<Weighted>| m.iter().map(Weigh::weight).sum::<usize>();
                    while !model.is_empty()
                        && (model.len() >= capacity || weight(&model) + item.weight() > max_bytes)
                    {
                        model.pop_front();
                        model_dropped += 1;
                    }
                    model.push_back(item);
                }
                mb.push_run(&mut run.iter().copied().map(Weighted).collect());
            }
            let st = mb.lock();
            proptest::prop_assert_eq!(&st.items, &model);
            proptest::prop_assert_eq!(st.dropped, model_dropped);
            proptest::prop_assert_eq!(st.bytes, model.iter().map(Weigh::weight).sum::<usize>());
        }
    }
}
