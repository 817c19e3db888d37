//! Each server answers on its port while it lives, and once dropped its
//! processes are gone and its directory removed.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anpx_test_servers::{MariaDb, Nats, Postgres};

fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

fn assert_gone(addr: SocketAddr, dir: &Path) {
    assert!(!answers(addr), "{addr} still answers after the drop");
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[test]
fn nats_speaks_nats_then_is_gone() {
    let Some(nats) = Nats::start_or_skip() else {
        return;
    };
    let mut s = TcpStream::connect_timeout(&nats.addr(), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut info = [0u8; 4];
    s.read_exact(&mut info).unwrap();
    assert_eq!(&info, b"INFO");
    assert!(nats.url().starts_with("nats://127.0.0.1:"));
    let (addr, dir) = (nats.addr(), nats.dir().to_owned());
    drop(nats);
    assert_gone(addr, &dir);
}

#[test]
fn postgres_answers_then_is_gone_with_its_backends() {
    let Some(pg) = Postgres::start_or_skip() else {
        return;
    };
    let addr: SocketAddr = ([127, 0, 0, 1], pg.port()).into();
    // A live client connection means a forked backend process, which the
    // drop must take down with the postmaster.
    let _client = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    assert!(pg.dir().join("data/PG_VERSION").exists());
    let dir = pg.dir().to_owned();
    drop(pg);
    assert_gone(addr, &dir);
}

#[test]
fn mariadb_answers_then_is_gone() {
    let Some(db) = MariaDb::start_or_skip() else {
        return;
    };
    let addr: SocketAddr = ([127, 0, 0, 1], db.port()).into();
    // MariaDB greets first: a handshake packet naming the protocol (10).
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = [0u8; 5];
    s.read_exact(&mut greeting).unwrap();
    assert_eq!(greeting[4], 10, "{greeting:?}");
    assert!(db.url().ends_with("/anpx"));
    let dir = db.dir().to_owned();
    drop(db);
    assert_gone(addr, &dir);
}
