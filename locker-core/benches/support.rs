//! A 3-master cluster plus a client-only coordinator, stepped in memory with
//! instant FIFO delivery, shared by the benchmarks.

use std::collections::VecDeque;
use std::time::Duration;

use locker_core::wire::{decode_frame, encode_frame, DEFAULT_MAX_FRAME};
use locker_core::{
    Config, Message, Node, NodeId, Output, Reply, Request, RequestId, Response, Time, Token,
};

pub const MASTERS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];
pub const CLIENT: NodeId = NodeId(9);

pub struct Cluster {
    pub nodes: Vec<Node>,
    queue: VecDeque<(NodeId, NodeId, Message)>,
    replies: Vec<Reply>,
    pub now: Time,
    /// Messages delivered so far.
    pub delivered: u64,
    /// Encode and decode every message, as a network would.
    pub encode: bool,
    buf: Vec<u8>,
}

impl Cluster {
    pub fn new(encode: bool) -> Cluster {
        let ids = MASTERS.iter().copied().chain([CLIENT]);
        let nodes = ids
            .map(|id| {
                let mut config = Config::new(id, MASTERS.to_vec(), vec![]);
                config.max_lease = Duration::from_secs(3600);
                Node::new(config, Time::ZERO).unwrap()
            })
            .collect();
        Cluster {
            nodes,
            queue: VecDeque::new(),
            replies: Vec::new(),
            now: Time::from_millis(1),
            delivered: 0,
            encode,
            buf: Vec::new(),
        }
    }

    fn index(id: NodeId) -> usize {
        if id == CLIENT {
            3
        } else {
            id.0 as usize - 1
        }
    }

    fn drain(&mut self, i: usize) {
        let from = self.nodes[i].id();
        while let Some(out) = self.nodes[i].poll_output() {
            match out {
                Output::Send { to, msg } => self.queue.push_back((from, to, msg)),
                Output::Reply { reply, .. } => self.replies.push(reply),
                Output::PersistTokenCeiling(_) | Output::PersistMembership(_) => {}
            }
        }
    }

    /// Submits `request` at the client node and delivers messages until it is answered.
    pub fn run(&mut self, request: Request) -> Reply {
        self.nodes[3].handle_request(self.now, RequestId(0), request);
        self.drain(3);
        while let Some((from, to, mut msg)) = self.queue.pop_front() {
            if self.encode {
                self.buf.clear();
                encode_frame(&msg, &mut self.buf).unwrap();
                msg = decode_frame(&self.buf, DEFAULT_MAX_FRAME)
                    .unwrap()
                    .unwrap()
                    .0;
            }
            let i = Self::index(to);
            self.nodes[i].handle_message(self.now, from, msg);
            self.delivered += 1;
            self.drain(i);
        }
        self.replies.pop().expect("the request was answered")
    }

    pub fn lock(&mut self, key: &[u8], lease: Duration) -> Token {
        let reply = self.run(Request::Lock {
            key: key.to_vec(),
            value: b"holder".to_vec(),
            lease,
            wait: Duration::ZERO,
        });
        match reply {
            Ok(Response::Locked(lease)) => lease.token,
            other => panic!("lock failed: {other:?}"),
        }
    }

    pub fn release(&mut self, key: &[u8], token: Token) {
        let reply = self.run(Request::Release {
            key: key.to_vec(),
            value: b"holder".to_vec(),
            token: Some(token),
            wait: Duration::ZERO,
        });
        assert_eq!(reply, Ok(Response::Released));
    }
}
