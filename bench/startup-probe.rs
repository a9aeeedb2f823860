//! Measures start-up to first request: the time from starting a client process to the
//! moment its first request bytes reach a listening socket on loopback.
//!
//! `startup-probe RUNS COMMAND ARGS...`, where `{addr}` in any argument becomes the
//! probe's `127.0.0.1:PORT`. The clock starts just before the process is spawned (so
//! fork, exec, dynamic loading, argument parsing, opening the archive and building the
//! HTTP client all count) and stops when the first bytes of the first connection are read.
//! The client then gets no answer and is killed. Prints
//! `median_ms min_ms max_ms first-line-of-request` for RUNS runs.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(0);
    let command: Vec<String> = args.collect();
    if runs == 0 || command.is_empty() {
        eprintln!("usage: startup-probe RUNS COMMAND ARGS... ({{addr}} is replaced)");
        std::process::exit(2);
    }
    let mut times = Vec::new();
    let mut first_line = String::new();
    for _ in 0..runs {
        match probe_once(&command) {
            Ok((elapsed, line)) => {
                times.push(elapsed);
                first_line = line;
            }
            Err(message) => {
                eprintln!("startup-probe: {message}");
                std::process::exit(1);
            }
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:.1} {:.1} {:.1} {}",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
        first_line
    );
}

fn probe_once(command: &[String]) -> Result<(Duration, String), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let argv: Vec<String> = command
        .iter()
        .map(|a| a.replace("{addr}", &addr.to_string()))
        .collect();
    // A blocking accept on its own thread, so waiting costs the client no CPU time.
    let (sender, arrivals) = mpsc::channel();
    let acceptor = thread::spawn(move || {
        let arrival = first_bytes(&listener);
        let _ = sender.send(arrival);
    });
    let started = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
    let deadline = started + Duration::from_secs(30);
    let result = loop {
        match arrivals.recv_timeout(Duration::from_millis(20)) {
            Ok(arrival) => break arrival.map(|(at, line)| (at - started, line)),
            Err(_) => {
                let exited = matches!(child.try_wait(), Ok(Some(_)));
                if exited || Instant::now() > deadline {
                    // Wake the acceptor so its thread ends.
                    let _ = TcpStream::connect(addr);
                    break Err(if exited {
                        "the client exited before sending a request".to_string()
                    } else {
                        "no request within 30 s".to_string()
                    });
                }
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = acceptor.join();
    result
}

fn first_bytes(listener: &TcpListener) -> Result<(Instant, String), String> {
    let (mut stream, _) = listener.accept().map_err(|e| e.to_string())?;
    let mut buffer = [0u8; 512];
    let n = stream.read(&mut buffer).map_err(|e| e.to_string())?;
    let at = Instant::now();
    let text = String::from_utf8_lossy(&buffer[..n]);
    let line = text.lines().next().unwrap_or("").trim();
    let printable = !line.is_empty() && line.chars().all(|c| c.is_ascii() && !c.is_control());
    Ok((
        at,
        if printable {
            line.to_string()
        } else {
            format!("({n} bytes, not plain HTTP: a TLS handshake)")
        },
    ))
}
