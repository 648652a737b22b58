//! `locker set-nodes` and `locker set-w`: membership changes, asked of one
//! node, which has them chosen by the masters in force (see PROTOCOL.md,
//! "Membership").

use locker_core::NodeId;
use locker_tokio::{Client, Error};
use serde_json::{json, Value};

/// `locker set-nodes`.
#[derive(clap::Args)]
pub struct SetNodesArgs {
    /// The masters after the change, as ID,ID,... A node none of the
    /// members was started with must be running first, started with their
    /// addresses: it tells them its own when it connects.
    #[arg(long, value_delimiter = ',', required = true)]
    masters: Vec<u64>,
    /// The replicas after the change, as ID,ID,... (default: none).
    #[arg(long, value_delimiter = ',')]
    replicas: Vec<u64>,
}

/// `locker set-w`.
#[derive(clap::Args)]
pub struct SetWArgs {
    /// The write quorum after the change.
    w: usize,
}

fn ids(list: &[u64]) -> Vec<NodeId> {
    list.iter().copied().map(NodeId).collect()
}

/// Replaces the member lists; answers once every old and new member has the
/// change (or its announcement's resends ran out).
pub async fn set_nodes(client: &Client, args: SetNodesArgs) -> Result<Value, Error> {
    client
        .set_nodes(ids(&args.masters), ids(&args.replicas))
        .await?;
    Ok(json!({"ok": true}))
}

/// Replaces the write quorum.
pub async fn set_w(client: &Client, args: SetWArgs) -> Result<Value, Error> {
    client.set_w(args.w).await?;
    Ok(json!({"ok": true}))
}
