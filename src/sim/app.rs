//! A simulated host's web app (a hand-written HTTP/1.1 server), and the small
//! HTTP client helpers the balancer and the traffic generator share.
//!
//! `/` is the app's real work and `/healthz` its health check; both answer
//! the version serving. A bad release (`SimHost::next_request_fails`)
//! answers part of `/` with 500 while `/healthz` still passes.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::host::{AppHealth, SimHost};

/// A request head larger than this is refused: nobody legitimate sends one.
const MAX_HEAD: usize = 16 * 1024;
/// A client that does not finish its request head within this is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The app of one host, listening on 127.0.0.1. Stops when dropped.
#[derive(Debug)]
pub struct AppServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl AppServer {
    pub async fn start(host: SimHost) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Owned by the accept loop: aborting it aborts the connections.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                connections.spawn(serve(stream, host.clone()));
            }
        });
        Ok(Self { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, host: SimHost) {
    let Ok(Ok(head)) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await else {
        return;
    };
    let path = request_path(&head);
    let health = host.health();
    if health == AppHealth::Stopped {
        // A stopped service has nobody listening: the client sees a reset,
        // not a polite error page. SO_LINGER 0 makes the close an RST.
        let _ = stream.set_zero_linger();
        return;
    }
    let (status, body) = match (path.as_deref(), health) {
        // A bad release's health check passes; its real work does not.
        (Some("/"), AppHealth::Serving(_)) if host.next_request_fails() => (
            "500 Internal Server Error",
            "internal server error".to_owned(),
        ),
        (Some("/" | "/healthz"), AppHealth::Serving(version)) => ("200 OK", version),
        (Some("/" | "/healthz"), _) => ("503 Service Unavailable", "warming up".to_owned()),
        (Some(_), _) => ("404 Not Found", "not found".to_owned()),
        (None, _) => ("400 Bad Request", "bad request".to_owned()),
    };
    let _ = stream.write_all(response(status, &body).as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A complete `Connection: close` response with a plain-text body.
pub(crate) fn response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Reads up to the blank line ending a request or response head. Returns
/// everything read, which may include the start of a body.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the end of the head",
            ));
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
        }
    }
}

/// The path of a `GET` request head, without its query.
pub(crate) fn request_path(head: &[u8]) -> Option<String> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut words = line.split(' ');
    let (method, target) = (words.next()?, words.next()?);
    if !matches!(method, "GET" | "HEAD") || !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    Some(target.split('?').next().unwrap_or(target).to_owned())
}

/// One `GET` over a fresh connection, bounded by `timeout` in total.
/// Returns the status code and the body.
pub(crate) async fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut reply = Vec::new();
        stream
            .read_to_end(&mut reply)
            .await
            .map_err(|e| format!("receive: {e}"))?;
        parse_response(&reply)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

/// Status code and body of a whole `Connection: close` response.
pub(crate) fn parse_response(reply: &[u8]) -> Result<(u16, String), String> {
    if reply.is_empty() {
        return Err("empty reply".to_owned());
    }
    let text = String::from_utf8_lossy(reply);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("truncated response head")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line: {}", head.lines().next().unwrap_or("")))?;
    Ok((status, body.to_owned()))
}

/// Copies `reply` to `client`, ignoring a client that went away.
pub(crate) async fn send_all<S: AsyncWrite + Unpin>(client: &mut S, reply: &[u8]) {
    let _ = client.write_all(reply).await;
    let _ = client.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_paths() {
        assert_eq!(
            request_path(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").as_deref(),
            Some("/healthz")
        );
        assert_eq!(
            request_path(b"GET /?a=b HTTP/1.0\r\n\r\n").as_deref(),
            Some("/")
        );
        assert_eq!(request_path(b"POST / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(request_path(b"garbage\r\n\r\n"), None);
    }

    #[tokio::test]
    async fn answers_by_app_state() {
        let host = SimHost::new(
            "web-01",
            "z",
            "1.0",
            Duration::from_millis(300),
            Duration::from_millis(300),
        );
        let app = AppServer::start(host.clone()).await.unwrap();
        let get = |path| http_get(app.addr(), path, Duration::from_secs(2));
        assert_eq!(get("/").await, Ok((200, "1.0".into())));
        assert_eq!(get("/healthz").await, Ok((200, "1.0".into())));
        assert_eq!(get("/nope").await.map(|r| r.0), Ok(404));
        let deploy = tokio::spawn({
            let host = host.clone();
            async move { host.exec("deploy 2.0").await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            get("/healthz").await.is_err(),
            "a stopped app must not answer"
        );
        assert_eq!(deploy.await.unwrap().0, 0);
        assert_eq!(get("/healthz").await.map(|r| r.0), Ok(503));
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(get("/").await, Ok((200, "2.0".into())));
    }

    #[tokio::test]
    async fn a_bad_release_fails_real_requests_while_its_health_check_passes() {
        let host = SimHost::new(
            "web-01",
            "z",
            "1.0",
            Duration::from_millis(10),
            Duration::ZERO,
        );
        let app = AppServer::start(host.clone()).await.unwrap();
        assert_eq!(host.exec("deploy --fail 30% 2.0").await.0, 0);
        let get = |path| http_get(app.addr(), path, Duration::from_secs(2));
        let mut statuses = Vec::new();
        for _ in 0..20 {
            assert_eq!(get("/healthz").await, Ok((200, "2.0".into())));
            statuses.push(get("/").await.unwrap().0);
        }
        let failed: Vec<usize> = (1..=20).filter(|n| statuses[n - 1] == 500).collect();
        assert_eq!(failed, [4, 7, 10, 14, 17, 20], "{statuses:?}");
        assert!(statuses.iter().all(|s| matches!(s, 200 | 500)));
        assert_eq!(
            get("/").await,
            Ok((200, "2.0".into())),
            "the 21st, served by 2.0"
        );
    }
}
