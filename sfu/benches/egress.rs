//! The real egress path: one VP8 packet from a publisher's str0m session
//! through the worker (SRTP decrypt, forwarding core, `write_rtp` on every
//! subscriber's session, SRTP encrypt) and, in the `sendmmsg` variant, out
//! of a real socket to a loopback sink in one `sendmmsg` per fan-out.
//! Sessions are set up on the virtual network (`convene_sfu::sim`). The
//! `two_workers` variant splits the 100 subscribers over two workers (a room
//! across workers, each packet relayed once): run on one thread here, it
//! shows what the crossing adds to the total work, which a real SFU then
//! spreads over two cores.
//!
//! `cargo bench --workspace --bench egress`

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use convene_sfu::sim::SimNet;
use convene_sfu::udp::{BufferSizes, MediaSocket, SendHeaders};
use convene_sfu::SfuConfig;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const MS: Duration = Duration::from_millis(1);

fn room(subscribers: usize) -> SimNet {
    room_on(1, subscribers)
}

/// `subscribers` spread evenly over `workers` (the publisher on the first).
fn room_on(workers: usize, subscribers: usize) -> SimNet {
    let mut net = SimNet::new(SfuConfig {
        max_participants_per_room: 1000,
        workers,
        room_spread_after: (subscribers + 1).div_ceil(workers),
        ..SfuConfig::for_tests()
    });
    net.join("r", "pub", true);
    for i in 0..subscribers {
        net.join("r", &format!("s{i}"), false);
    }
    net.run_for("r", Duration::from_millis(400), 5 * MS);
    let cam = format!("pub/{}", net.client("pub").video_mid.expect("publisher"));
    for i in 0..subscribers {
        net.subscribe("r", &format!("s{i}"), vec![cam.clone()]);
    }
    net.run_for("r", Duration::from_millis(300), 5 * MS);
    net.publish_packet("pub", true, true, 1100);
    net.run_for("r", Duration::from_millis(100), 5 * MS);
    assert!(
        net.clients.iter().skip(1).all(|c| !c.received.is_empty()),
        "every subscriber forwarded to before measuring"
    );
    net.capture = true;
    net
}

/// One packet in, the worker's datagrams out (not sent).
fn forward_one(net: &mut SimNet) -> Vec<convene_sfu::udp::Transmit> {
    net.now += Duration::from_micros(50);
    net.publish_packet("pub", true, false, 1100);
    for d in net.client_transmits("pub") {
        net.to_worker("pub", &d);
    }
    net.take_worker_output()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("egress");
    let socket = MediaSocket::bind(
        (Ipv4Addr::LOCALHOST, 0).into(),
        BufferSizes {
            recv: 1 << 20,
            send: 8 << 20,
        },
    )
    .expect("socket");
    let mut headers = SendHeaders::new(&socket);
    // Nobody reads the sink: the kernel drops what overflows it, after the
    // send path did all its work.
    let sink = UdpSocket::bind("127.0.0.1:0").expect("sink");
    let sink_addr = sink.local_addr().expect("sink addr");
    for n in [1usize, 10, 100] {
        let mut net = room(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("forward_srtp", n), &n, |b, _| {
            b.iter(|| forward_one(&mut net))
        });
        g.bench_with_input(BenchmarkId::new("forward_srtp_sendmmsg", n), &n, |b, _| {
            b.iter(|| {
                let mut out = forward_one(&mut net);
                for t in &mut out {
                    t.destination = sink_addr;
                    t.source = None;
                }
                socket.send(&mut headers, &mut out)
            })
        });
    }
    let mut net = room_on(2, 100);
    assert!(net.clients.iter().any(|c| c.worker == 1), "spread");
    g.throughput(Throughput::Elements(100));
    g.bench_with_input(
        BenchmarkId::new("forward_srtp_two_workers", 100),
        &100,
        |b, _| b.iter(|| forward_one(&mut net)),
    );
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
