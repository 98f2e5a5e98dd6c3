//! A real moto_server per test, and a stub that fails requests in front of it.
//!
//! moto keeps its state per process, so each test starts its own server on a
//! free loopback port and tests run in parallel. The server is a small Python
//! wrapper around `moto.server.main` that also exits by itself when the test
//! process is gone (a SIGKILLed test run drops nothing); otherwise it is
//! killed by its PID when the [`Moto`] is dropped, panics included.
//! Readiness is a bounded poll of an HTTP answer, never a fixed sleep.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::config::Credentials;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

pub const REGION: &str = "us-east-1";
const READY_WITHIN: Duration = Duration::from_secs(60);

const WRAPPER: &str = r#"
import os, sys, threading, time
owner, port = int(sys.argv[1]), sys.argv[2]
def watch():
    while True:
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            os._exit(0)
        time.sleep(0.5)
threading.Thread(target=watch, daemon=True).start()
from moto.server import main
main(["-H", "127.0.0.1", "-p", port])
"#;

/// Whether moto can run here; tests fail (and say how to install it) when not.
pub fn available() -> bool {
    Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub endpoint: String,
    pub addr: SocketAddr,
}

impl Moto {
    pub async fn start() -> Moto {
        // A port taken between our probe and moto's bind makes moto exit:
        // try again on another one.
        for _ in 0..5 {
            let addr = free_port().await;
            let child = Command::new("python3")
                .args([
                    "-c",
                    WRAPPER,
                    &std::process::id().to_string(),
                    &addr.port().to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto_server");
            let mut moto = Moto {
                child,
                endpoint: format!("http://{addr}"),
                addr,
            };
            if moto.wait_ready().await {
                return moto;
            }
        }
        panic!("moto_server did not start on any of 5 ports");
    }

    /// Polls until moto answers HTTP; false when the process exited first.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if http_ok(self.addr).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "moto_server on {} not ready within {READY_WITHIN:?}",
            self.addr
        );
    }

    /// An SDK configuration pointing at `endpoint` with fixed test
    /// credentials, the same timeouts and retries as production.
    pub async fn config_for(endpoint: &str) -> SdkConfig {
        fleetroll::transport::aws::sdk_config_with(
            Some(REGION),
            Some(endpoint),
            Some(Credentials::new("testing", "testing", None, None, "moto")),
        )
        .await
    }

    pub async fn config(&self) -> SdkConfig {
        Self::config_for(&self.endpoint).await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local address")
}

async fn http_ok(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: moto\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// What the stub answers instead of forwarding.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    /// HTTP 400 with an AWS `Throttling` error document.
    Throttling,
    /// HTTP 503 with an HTML page, like a proxy in front of AWS.
    Unavailable,
}

/// An HTTP stub in front of moto that fails the first `fail_first` requests,
/// then forwards every request to moto, one request per connection.
#[derive(Debug)]
pub struct FlakyProxy {
    pub endpoint: String,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyProxy {
    pub async fn start(upstream: SocketAddr, fail_first: usize, failure: Failure) -> FlakyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = serve(client, upstream, &counter, fail_first, failure).await;
                });
            }
        });
        FlakyProxy {
            endpoint,
            requests,
            task,
        }
    }

    /// Requests received so far, failed and forwarded.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    counter: &AtomicUsize,
    fail_first: usize,
    failure: Failure,
) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut client).await? else {
        return Ok(());
    };
    if counter.fetch_add(1, Ordering::SeqCst) < fail_first {
        let (status, content_type, text) = match failure {
            Failure::Throttling => (
                "400 Bad Request",
                "text/xml",
                "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">\
                 <Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>\
                 <RequestId>stub</RequestId></ErrorResponse>",
            ),
            Failure::Unavailable => (
                "503 Service Unavailable",
                "text/html",
                "<html><body>503 Service Unavailable</body></html>",
            ),
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        client.write_all(answer.as_bytes()).await?;
        return client.shutdown().await;
    }
    // Forward with `Connection: close`, so moto's answer ends at EOF.
    let mut request: String = head
        .lines()
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .map(|line| format!("{line}\r\n"))
        .collect();
    request.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(request.as_bytes()).await?;
    server.write_all(&body).await?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).await?;
    client.write_all(&answer).await?;
    client.shutdown().await
}

/// One HTTP request: the head (without the blank line) and the body.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buffer[end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head, body)))
}
