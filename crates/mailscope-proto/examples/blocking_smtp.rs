//! A blocking SMTP driver for the sans-IO client machine, on `std::net::TcpStream` alone: no
//! async runtime, no TLS. It proves the machine needs nothing but bytes in, bytes out and the
//! caller's clock.
//!
//! ```text
//! cargo run -p mailscope-proto --example blocking_smtp -- 127.0.0.1:12525 from@example.test to@example.test
//! ```
//!
//! Sends a short message (EHLO, MAIL, RCPT, DATA, QUIT; no STARTTLS, no AUTH) and prints the
//! transcript in the escape grammar, then the findings and the outcome. Exit status: 0 when
//! the message was accepted, otherwise swaks' number for the step that failed.

use std::error::Error;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailscope_proto::smtp::client::{Client, ClientOptions, Event, HelloKind, Outcome};
use mailscope_proto::smtp::data::prepare_normalized;
use mailscope_proto::smtp::reply::ReplyLimits;
use mailscope_proto::transcript::{RenderOptions, Role, Timestamp, direction_mark, render_chunk};

/// Microseconds since the Unix epoch, as the drivers pass time to the machines.
fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
}

fn main() -> Result<ExitCode, Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, from, to] = args.as_slice() else {
        eprintln!("usage: blocking_smtp HOST:PORT FROM TO");
        return Ok(ExitCode::from(1));
    };
    let message = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: mailscope blocking example\r\n\r\n\
         Sent by mailscope-proto's client machine over a blocking std::net::TcpStream.\r\n"
    );
    let opts = ClientOptions {
        helo_name: "blocking-example.mailscope.test".into(),
        hello: HelloKind::Ehlo,
        implicit_tls: false,
        starttls: false,
        auth: None,
        allow_plaintext_auth: false,
        from: from.clone(),
        to: vec![to.clone()],
        data: Some(prepare_normalized(message.as_bytes())),
        quit_after: None,
        reply_limits: ReplyLimits::default(),
        step_timeout_us: 30_000_000,
        ..ClientOptions::default()
    };

    let mut stream = TcpStream::connect(server.as_str())?;
    let mut client = Client::new(opts);
    client.start(now());
    let mut buf = vec![0u8; 64 * 1024];
    let mut outcome = None;
    loop {
        // 1. Write everything the machine wants sent.
        let mut out = Vec::new();
        while client.poll_transmit(&mut out) {}
        if !out.is_empty() && stream.write_all(&out).is_err() {
            client.handle_eof(now());
        }
        // 2. Drain events. This driver has no TLS, and the options never ask for STARTTLS.
        let mut again = false;
        while let Some(event) = client.poll_event() {
            match event {
                Event::StartTlsRequested => {
                    client.handle_tls_failed(now(), "this example has no TLS");
                    again = true;
                }
                Event::Finished(o) => outcome = Some(o),
                _ => {}
            }
        }
        if again {
            continue;
        }
        if client.is_finished() {
            break;
        }
        // 3. Wait for the server until the machine's deadline.
        let wait = client
            .poll_timeout()
            .map_or(Duration::from_secs(30), |deadline| {
                Duration::from_micros(deadline.0.saturating_sub(now().0))
            });
        stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match stream.read(&mut buf) {
            Ok(0) => client.handle_eof(now()),
            Ok(n) => client.handle_input(now(), &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                client.handle_timeout(now())
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => client.handle_eof(now()),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);

    // The transcript: every byte as it crossed, CR and LF visible.
    let render = RenderOptions {
        escape_all: true,
        show_secrets: false,
    };
    for chunk in client.transcript().chunks() {
        let mark = direction_mark(Role::Client, chunk.direction, chunk.tls);
        for line in render_chunk(chunk, render) {
            println!("{mark}{}", line.text);
        }
    }
    for f in client.findings() {
        println!("*** {f}");
    }
    let code = match outcome {
        Some(Outcome::Completed) => {
            println!("*** completed: the message was accepted");
            0
        }
        Some(Outcome::StoppedAfter(stage) | Outcome::Dropped(stage)) => {
            println!("*** stopped after {}", stage.name());
            0
        }
        Some(Outcome::Failed { step, reason, .. }) => {
            println!("*** failed at {}: {reason}", step.name());
            step.exit_code()
        }
        None => {
            println!("*** the session ended without an outcome");
            1
        }
    };
    Ok(ExitCode::from(code))
}
