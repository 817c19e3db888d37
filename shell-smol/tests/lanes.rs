//! `anpx-smol`'s lanes: the accept loop on lane 0 hands connections to the
//! lanes in turn, and each is served by its lane's executor.

use std::net::SocketAddr;

use futures_util::{AsyncReadExt, AsyncWriteExt};
use shell_common::accept::{accept_loop, Listen};
use shell_common::lanes;
use shell_common::receiver::BoxFuture;
use shell_smol::rt::{block_on_lanes, spawn, Smol, TcpAccept};

type Conn = <TcpAccept as Listen>::Conn;

/// Answers the byte it reads with that byte and the lane it runs on.
fn echo_lane(mut conn: Conn, _peer: SocketAddr) -> BoxFuture<()> {
    Box::pin(async move {
        let lane = lanes::current().map_or(u8::MAX, |l| l.0 as u8);
        let mut byte = [0u8; 1];
        conn.read_exact(&mut byte).await.unwrap();
        conn.write_all(&[byte[0], lane]).await.unwrap();
        conn.flush().await.unwrap();
    })
}

#[test]
fn connections_are_served_on_each_lane_in_turn() {
    let seen = block_on_lanes(3, || {}, || {}, async {
        let listener = TcpAccept::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let accepting = spawn(accept_loop(listener, &Smol, None, "test", echo_lane));
        let mut seen = Vec::new();
        for i in 0..6u8 {
            let mut client = smol::net::TcpStream::connect(addr).await.unwrap();
            client.write_all(&[i]).await.unwrap();
            let mut answer = [0u8; 2];
            client.read_exact(&mut answer).await.unwrap();
            assert_eq!(answer[0], i, "each connection answers its own byte");
            seen.push(answer[1]);
        }
        drop(accepting);
        seen
    })
    .unwrap();
    assert_eq!(seen, [0, 1, 2, 0, 1, 2]);
}
