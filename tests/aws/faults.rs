//! A fault-and-timing layer in front of moto_server, so that moto behaves
//! like AWS where fleetroll cares.
//!
//! moto is kinder than AWS: a registered target is `healthy` at once, a
//! deregistered one is gone at once (no `draining`), nothing is throttled and
//! every answer arrives. [`FaultProxy`] forwards every request to moto, one
//! request per connection (`Connection: close`, the answer read to EOF), and
//! on the way:
//!
//! - answers the next N requests of an action with AWS's throttling error
//!   instead of forwarding them ([`FaultProxy::throttle`]);
//! - forwards the next request of an action and then closes the connection
//!   without a byte of the answer ([`FaultProxy::lose_answer`]);
//! - rewrites DescribeTargetHealth answers: a target registered through the
//!   proxy reads `initial` for a while ([`FaultProxy::healthy_after`]), a
//!   target deregistered through it still reads `draining` for a while
//!   ([`FaultProxy::draining_for`]).
//!
//! The requests are the AWS Query protocol of the SDK (ELBv2, Auto Scaling,
//! EC2): `POST /` with a form-urlencoded body `Action=...&Version=...`.
//! Registrations and drains are kept per (target group ARN, target id,
//! port), like AWS does; moto itself keys a group's targets by id only.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const ELBV2_VERSION: &str = "2015-12-01";
const INITIAL_REASON: &str = "Elb.RegistrationInProgress";
const INITIAL_DESCRIPTION: &str = "Target registration is in progress";
const DRAINING_REASON: &str = "Target.DeregistrationInProgress";
const DRAINING_DESCRIPTION: &str = "Target deregistration is in progress";
const NOT_REGISTERED: &str = "Target.NotRegistered";

/// An HTTP proxy in front of moto that throttles, loses answers and makes
/// target health take time, like AWS. Dropping it stops accepting.
#[derive(Debug)]
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`, for `Moto::config_for`.
    pub endpoint: String,
    rules: Arc<Mutex<Rules>>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (free port) and forwards every request to moto at `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let rules = Arc::new(Mutex::new(Rules::default()));
        let shared = rules.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rules = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(client, upstream, &rules).await;
                });
            }
        });
        FaultProxy {
            endpoint,
            rules,
            task,
        }
    }

    /// The next `calls` requests of the API `action` (e.g. "DescribeTargetHealth") get AWS's
    /// throttling answer (HTTP 400, XML error document with Code `Throttling`, "Rate exceeded") without reaching moto.
    ///
    /// That is the answer of ELBv2 and Auto Scaling (an `ErrorResponse` in
    /// the service's namespace). An EC2 action gets EC2's own throttling
    /// answer instead, the only one its SDK client understands: HTTP 503,
    /// `<Response><Errors><Error>` with Code `RequestLimitExceeded`,
    /// "Request limit exceeded.". Calls add up with any still pending.
    pub fn throttle(&self, action: &str, calls: usize) {
        *self.rules().throttle.entry(action.to_owned()).or_default() += calls;
    }

    /// Once a request of `after` arrives, the next `calls` requests of
    /// `action` are throttled as [`FaultProxy::throttle`] says: a fault in
    /// the middle of an operation (the polls after a termination).
    pub fn throttle_after(&self, after: &str, action: &str, calls: usize) {
        self.rules()
            .throttle_after
            .push((after.to_owned(), action.to_owned(), calls));
    }

    /// The next request of `action` is forwarded and takes effect at moto, then its answer is lost:
    /// the connection is closed without any response bytes.
    pub fn lose_answer(&self, action: &str) {
        *self.rules().lose.entry(action.to_owned()).or_default() += 1;
    }

    /// From now on, a target registered through the proxy (RegisterTargets: each Targets.member.N.Id/Port, per TargetGroupArn)
    /// reads `initial` (State initial, Reason Elb.RegistrationInProgress) in DescribeTargetHealth answers of that group
    /// until `delay` has passed since its registration, then whatever moto says.
    ///
    /// A registration without a port is the group's port (asked of moto).
    /// Registering again while still `initial` keeps the first start (AWS:
    /// registering a registered target changes nothing); after `delay`, a
    /// new registration starts over. A target that moto reports as not
    /// registered is left as moto says.
    pub fn healthy_after(&self, delay: Duration) {
        self.rules().healthy_after = Some(delay);
    }

    /// From now on, a target deregistered through the proxy (DeregisterTargets) still appears in DescribeTargetHealth
    /// answers of that group as `draining` (Reason Target.DeregistrationInProgress) for `delay` after its
    /// deregistration (moto forgets it at once); registering it again ends that.
    ///
    /// The port is the one DeregisterTargets named, else the group's port;
    /// HealthCheckPort is the group's (both asked of moto with
    /// DescribeTargetGroups before forwarding). A DescribeTargetHealth that
    /// names targets gets `draining` instead of moto's `unused`
    /// (Target.NotRegistered) for a draining one; one that names none gets
    /// the draining targets added. A failed deregistration drains nothing.
    pub fn draining_for(&self, delay: Duration) {
        self.rules().draining_for = Some(delay);
    }

    /// From now on, Auto Scaling refuses what AWS refuses and moto allows:
    /// a `SetDesiredCapacity` outside the group's min and max size, and an
    /// `EnterStandby` with `ShouldDecrementDesiredCapacity` that would take
    /// its desired capacity below its min size (HTTP 400, `ValidationError`,
    /// read against moto's group before forwarding).
    pub fn enforce_sizes(&self) {
        self.rules().enforce_sizes = true;
    }

    /// When each request of `action` arrived (including throttled ones), in order.
    pub fn calls(&self, action: &str) -> Vec<Instant> {
        self.rules().calls.get(action).cloned().unwrap_or_default()
    }

    fn rules(&self) -> MutexGuard<'_, Rules> {
        lock(&self.rules)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(rules: &Mutex<Rules>) -> MutexGuard<'_, Rules> {
    // A panicking request task leaves consistent state behind: go on.
    rules
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// (target group ARN, target id, port).
type Key = (String, String, u16);

/// A target registered through the proxy, `initial` until `until`.
#[derive(Debug)]
struct Registered {
    until: Instant,
    seq: u64,
}

/// A target deregistered through the proxy, `draining` until `until`.
#[derive(Debug)]
struct Draining {
    until: Instant,
    health_check_port: String,
    seq: u64,
}

#[derive(Debug, Default)]
struct Rules {
    calls: HashMap<String, Vec<Instant>>,
    throttle: HashMap<String, usize>,
    /// (after, action, calls): armed by a request of `after`.
    throttle_after: Vec<(String, String, usize)>,
    lose: HashMap<String, usize>,
    healthy_after: Option<Duration>,
    draining_for: Option<Duration>,
    enforce_sizes: bool,
    registered: HashMap<Key, Registered>,
    draining: HashMap<Key, Draining>,
    next_seq: u64,
}

/// What the proxy does with one request besides forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Throttle,
    LoseAnswer,
}

/// A RegisterTargets or DeregisterTargets on its way to moto: the records
/// it added (taken back if moto refuses) and the targets it names.
#[derive(Debug)]
struct Change {
    register: bool,
    targets: Vec<Key>,
    added: Vec<(Key, u64)>,
}

impl Rules {
    fn arrive(&mut self, action: &str, at: Instant) -> Fault {
        self.calls.entry(action.to_owned()).or_default().push(at);
        let (armed, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.throttle_after)
            .into_iter()
            .partition(|(after, _, _)| after == action);
        self.throttle_after = waiting;
        for (_, throttled, calls) in armed {
            *self.throttle.entry(throttled).or_default() += calls;
        }
        if take_one(&mut self.throttle, action) {
            Fault::Throttle
        } else if take_one(&mut self.lose, action) {
            Fault::LoseAnswer
        } else {
            Fault::None
        }
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn forget_expired(&mut self, now: Instant) {
        self.registered.retain(|_, r| r.until > now);
        self.draining.retain(|_, d| d.until > now);
    }

    /// Records added before forwarding, so that no answer moto gives in
    /// the meantime shows the target `healthy` or gone.
    fn begin(&mut self, register: bool, targets: Vec<Key>, health_check_port: &str) -> Change {
        let now = Instant::now();
        self.forget_expired(now);
        let mut added = Vec::new();
        let delay = if register {
            self.healthy_after
        } else {
            self.draining_for
        };
        if let Some(delay) = delay.filter(|d| !d.is_zero()) {
            for key in &targets {
                let seq = self.seq();
                let fresh = if register {
                    match self.registered.entry(key.clone()) {
                        std::collections::hash_map::Entry::Occupied(_) => false,
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert(Registered {
                                until: now + delay,
                                seq,
                            });
                            true
                        }
                    }
                } else {
                    match self.draining.entry(key.clone()) {
                        std::collections::hash_map::Entry::Occupied(_) => false,
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert(Draining {
                                until: now + delay,
                                health_check_port: health_check_port.to_owned(),
                                seq,
                            });
                            true
                        }
                    }
                };
                if fresh {
                    added.push((key.clone(), seq));
                }
            }
        }
        Change {
            register,
            targets,
            added,
        }
    }

    /// After moto's answer: a registration ends the targets' draining, a
    /// deregistration their `initial`; a refused change takes back what it added.
    fn settle(&mut self, change: Change, accepted: bool) {
        if accepted {
            for key in &change.targets {
                if change.register {
                    self.draining.remove(key);
                } else {
                    self.registered.remove(key);
                }
            }
            return;
        }
        for (key, seq) in change.added {
            if change.register {
                if self.registered.get(&key).is_some_and(|r| r.seq == seq) {
                    self.registered.remove(&key);
                }
            } else if self.draining.get(&key).is_some_and(|d| d.seq == seq) {
                self.draining.remove(&key);
            }
        }
    }
}

fn take_one(counts: &mut HashMap<String, usize>, action: &str) -> bool {
    match counts.get_mut(action) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    rules: &Mutex<Rules>,
) -> io::Result<()> {
    let Some(request) = read_request(&mut client).await? else {
        return Ok(());
    };
    let params = form(&request.body);
    let action = param(&params, "Action")
        .map(str::to_owned)
        .or_else(|| {
            header(&request.head, "x-amz-target")
                .map(|t| t.rsplit('.').next().unwrap_or(t).to_owned())
        })
        .unwrap_or_default();
    let fault = lock(rules).arrive(&action, Instant::now());
    if fault == Fault::Throttle {
        client
            .write_all(&throttling_answer(&request.head, &params))
            .await?;
        return client.shutdown().await;
    }

    let enforce_sizes = lock(rules).enforce_sizes;
    if enforce_sizes && let Some(refusal) = size_refusal(upstream, &request, &params, &action).await
    {
        client.write_all(&refusal).await?;
        return client.shutdown().await;
    }

    let change = match action.as_str() {
        "RegisterTargets" => prepare(upstream, &request, &params, true, rules).await,
        "DeregisterTargets" => prepare(upstream, &request, &params, false, rules).await,
        _ => None,
    };
    let answer = forward(upstream, &request).await;
    if let Some(change) = change {
        let accepted = answer
            .as_ref()
            .is_ok_and(|a| status_of(a).is_some_and(|s| (200..300).contains(&s)));
        lock(rules).settle(change, accepted);
    }
    let mut answer = answer?;
    if action == "DescribeTargetHealth" {
        if let Some(arn) = param(&params, "TargetGroupArn") {
            let names_targets = !targets(&params).is_empty();
            if let Some(rewritten) = rewrite_answer(&answer, |body| {
                let mut rules = lock(rules);
                rules.forget_expired(Instant::now());
                rewrite_health(body, arn, names_targets, &rules)
            }) {
                answer = rewritten;
            }
        }
    }
    if fault == Fault::LoseAnswer {
        // It took effect at moto; the client hears nothing.
        return client.shutdown().await;
    }
    client.write_all(&answer).await?;
    client.shutdown().await
}

/// Resolves the targets of a (De)RegisterTargets to keys and records them.
async fn prepare(
    upstream: SocketAddr,
    request: &Request,
    params: &[(String, String)],
    register: bool,
    rules: &Mutex<Rules>,
) -> Option<Change> {
    let arn = param(params, "TargetGroupArn")?;
    let named = targets(params);
    let draining = !register && lock(rules).draining_for.is_some();
    let group = if draining || named.iter().any(|(_, port)| port.is_none()) {
        group_info(upstream, &request.head, arn).await
    } else {
        None
    };
    let keys = named
        .into_iter()
        .filter_map(|(id, port)| {
            let port = port.or(group.as_ref().map(|g| g.port))?;
            Some((arn.to_owned(), id, port))
        })
        .collect();
    let health_check_port = group
        .as_ref()
        .map_or("traffic-port", |g| g.health_check_port.as_str());
    Some(lock(rules).begin(register, keys, health_check_port))
}

/// One HTTP request: the head (without the blank line) and the whole body.
#[derive(Debug)]
struct Request {
    head: String,
    body: Vec<u8>,
}

/// Reads one request; a chunked body is de-chunked. `None` when the client
/// closed before sending a whole head.
async fn read_request(stream: &mut TcpStream) -> io::Result<Option<Request>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    if header(&head, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let mut rest = buffer[end + 4..].to_vec();
    let body = if is_chunked(&head) {
        loop {
            if let Some((body, _)) = dechunk(&rest) {
                break body;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "chunked request body cut short",
                ));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
    } else {
        let length: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while rest.len() < length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(length);
        rest
    };
    Ok(Some(Request { head, body }))
}

/// Sends `request` to moto with `Connection: close` and a `Content-Length`
/// body, and reads the whole answer (to EOF).
async fn forward(upstream: SocketAddr, request: &Request) -> io::Result<Vec<u8>> {
    let mut head: String = request
        .head
        .lines()
        .enumerate()
        .filter(|(index, line)| {
            *index == 0 || {
                let name = line.split(':').next().unwrap_or("").trim();
                ![
                    "connection",
                    "content-length",
                    "transfer-encoding",
                    "expect",
                ]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            }
        })
        .map(|(_, line)| format!("{line}\r\n"))
        .collect();
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        request.body.len()
    ));
    exchange(upstream, head.as_bytes(), &request.body).await
}

async fn exchange(upstream: SocketAddr, head: &[u8], body: &[u8]) -> io::Result<Vec<u8>> {
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(head).await?;
    server.write_all(body).await?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).await?;
    Ok(answer)
}

/// What the proxy needs to know of a target group.
#[derive(Debug)]
struct GroupInfo {
    port: u16,
    health_check_port: String,
}

/// The group's port and HealthCheckPort, asked of moto directly
/// (DescribeTargetGroups, with the client's Authorization so that moto
/// routes it to ELBv2). `None` when moto does not know the group.
async fn group_info(upstream: SocketAddr, client_head: &str, arn: &str) -> Option<GroupInfo> {
    let text = ask_moto(
        upstream,
        client_head,
        &format!(
            "Action=DescribeTargetGroups&Version={ELBV2_VERSION}&TargetGroupArns.member.1={}",
            percent_encode(arn)
        ),
    )
    .await?;
    let group = first_member(element(&text, "TargetGroups")?)?;
    Some(GroupInfo {
        port: element(group, "Port")?.trim().parse().ok()?,
        health_check_port: element(group, "HealthCheckPort")
            .map_or_else(|| "traffic-port".to_owned(), unescape),
    })
}

/// One query-protocol call of the proxy's own to moto, signed as the
/// client's request was (moto routes by the credential scope's service);
/// the answer's body when it succeeded.
async fn ask_moto(upstream: SocketAddr, client_head: &str, body: &str) -> Option<String> {
    let mut head = format!(
        "POST / HTTP/1.1\r\nHost: {upstream}\r\n\
         Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(authorization) = header(client_head, "authorization") {
        head.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    head.push_str("\r\n");
    let raw = exchange(upstream, head.as_bytes(), body.as_bytes())
        .await
        .ok()?;
    let answer = parse_answer(&raw)?;
    (answer.status == 200).then(|| String::from_utf8_lossy(&answer.body).into_owned())
}

/// AWS's refusal of a capacity change past the group's sizes, or `None`
/// when the request is not one or stays within them.
async fn size_refusal(
    upstream: SocketAddr,
    request: &Request,
    params: &[(String, String)],
    action: &str,
) -> Option<Vec<u8>> {
    let group = param(params, "AutoScalingGroupName")?;
    let decrement = param(params, "ShouldDecrementDesiredCapacity") == Some("true");
    if action != "SetDesiredCapacity" && !(action == "EnterStandby" && decrement) {
        return None;
    }
    let (min, max, desired) = group_sizes(upstream, &request.head, group).await?;
    let message = if action == "SetDesiredCapacity" {
        let wanted: i64 = param(params, "DesiredCapacity")?.parse().ok()?;
        if wanted > max {
            format!(
                "New SetDesiredCapacity value {wanted} is above max value {max} for the AutoScalingGroup."
            )
        } else if wanted < min {
            format!(
                "New SetDesiredCapacity value {wanted} is below min value {min} for the AutoScalingGroup."
            )
        } else {
            return None;
        }
    } else {
        let leaving = params
            .iter()
            .filter(|(key, _)| key.starts_with("InstanceIds.member."))
            .count() as i64;
        if desired - leaving >= min {
            return None;
        }
        format!(
            "AutoScalingGroup {group} has min-size={min}, max-size={max}, and desired-size={desired}. \
             To place into standby {leaving} instances, please update the AutoScalingGroup sizes appropriately."
        )
    };
    let text = format!(
        "<ErrorResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">\
         <Error><Type>Sender</Type><Code>ValidationError</Code><Message>{}</Message></Error>\
         <RequestId>fault-proxy-sizes</RequestId></ErrorResponse>",
        escape(&message)
    );
    Some(
        format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\
             x-amzn-RequestId: fault-proxy-sizes\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
        .into_bytes(),
    )
}

/// The group's (min, max, desired) as moto holds them.
async fn group_sizes(
    upstream: SocketAddr,
    client_head: &str,
    group: &str,
) -> Option<(i64, i64, i64)> {
    let text = ask_moto(
        upstream,
        client_head,
        &format!(
            "Action=DescribeAutoScalingGroups&Version=2011-01-01&AutoScalingGroupNames.member.1={}",
            percent_encode(group)
        ),
    )
    .await?;
    let found = first_member(element(&text, "AutoScalingGroups")?)?;
    let number = |name: &str| element(found, name)?.trim().parse::<i64>().ok();
    Some((
        number("MinSize")?,
        number("MaxSize")?,
        number("DesiredCapacity")?,
    ))
}

/// AWS's throttling answer for the service the request is for.
fn throttling_answer(head: &str, params: &[(String, String)]) -> Vec<u8> {
    let version = param(params, "Version").unwrap_or(ELBV2_VERSION);
    // The service of the SigV4 credential scope: .../REGION/SERVICE/aws4_request.
    let service = header(head, "authorization")
        .and_then(|a| {
            let scope = a.split("Credential=").nth(1)?;
            let scope = scope.split([',', ' ']).next()?;
            scope.split('/').nth(3).map(str::to_owned)
        })
        .unwrap_or_else(|| {
            match version {
                "2016-11-15" => "ec2",
                "2011-01-01" => "autoscaling",
                _ => "elasticloadbalancing",
            }
            .to_owned()
        });
    let (status, text) = if service == "ec2" {
        (
            "503 Service Unavailable",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
             <Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>\
             </Error></Errors><RequestID>fault-proxy-throttled</RequestID></Response>"
                .to_owned(),
        )
    } else {
        (
            "400 Bad Request",
            format!(
                "<ErrorResponse xmlns=\"http://{service}.amazonaws.com/doc/{version}/\">\
                 <Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>\
                 <RequestId>fault-proxy-throttled</RequestId></ErrorResponse>"
            ),
        )
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\
         x-amzn-RequestId: fault-proxy-throttled\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )
    .into_bytes()
}

/// An HTTP answer taken apart: the status line, the other header lines, the
/// body (de-chunked, cut at Content-Length).
#[derive(Debug)]
struct Answer {
    status_line: String,
    status: u16,
    headers: Vec<String>,
    body: Vec<u8>,
}

fn status_of(raw: &[u8]) -> Option<u16> {
    let line = raw.split(|&b| b == b'\r').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let end = find(raw, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?.to_owned();
    let status = status_of(status_line.as_bytes())?;
    let headers: Vec<String> = lines.map(str::to_owned).collect();
    let rest = &raw[end + 4..];
    let body = if is_chunked(head) {
        dechunk(rest)?.0
    } else if let Some(length) = header(head, "content-length") {
        let length: usize = length.parse().ok()?;
        rest.get(..length)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(Answer {
        status_line,
        status,
        headers,
        body,
    })
}

/// A 200 answer with its body passed through `edit`, re-emitted with a
/// correct Content-Length and no chunking. `None`: leave the answer as is
/// (not a 200, not parseable, or `edit` changed nothing).
fn rewrite_answer(raw: &[u8], edit: impl FnOnce(&str) -> Option<String>) -> Option<Vec<u8>> {
    let answer = parse_answer(raw)?;
    if answer.status != 200 {
        return None;
    }
    let body = edit(std::str::from_utf8(&answer.body).ok()?)?;
    let mut out = format!("{}\r\n", answer.status_line);
    for line in &answer.headers {
        let name = line.split(':').next().unwrap_or("").trim();
        if !["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    Some(bytes)
}

/// A DescribeTargetHealth answer of group `arn` with the proxy's `initial`
/// and `draining` targets; `None` when nothing changes.
fn rewrite_health(body: &str, arn: &str, names_targets: bool, rules: &Rules) -> Option<String> {
    const OPEN: &str = "<TargetHealthDescriptions>";
    const CLOSE: &str = "</TargetHealthDescriptions>";
    const EMPTY: &str = "<TargetHealthDescriptions/>";
    let (start, inner, end) = if let Some(at) = body.find(EMPTY) {
        (at, "", at + EMPTY.len())
    } else {
        let open = body.find(OPEN)?;
        let close = open + body[open..].find(CLOSE)?;
        (open, &body[open + OPEN.len()..close], close + CLOSE.len())
    };
    let mut changed = false;
    let mut members = Vec::new();
    let mut seen = Vec::new();
    for member in members_of(inner) {
        let id = element(member, "Id").map(unescape);
        let port = element(member, "Port").and_then(|p| p.trim().parse::<u16>().ok());
        let (Some(id), Some(port)) = (id, port) else {
            members.push(member.to_owned());
            continue;
        };
        let key = (arn.to_owned(), id, port);
        let health = element(member, "TargetHealth").unwrap_or("");
        let state = element(health, "State").unwrap_or("");
        let reason = element(health, "Reason").unwrap_or("");
        let not_registered = reason == NOT_REGISTERED;
        let replacement = if not_registered && rules.draining.contains_key(&key) {
            Some(("draining", DRAINING_REASON, DRAINING_DESCRIPTION))
        } else if !not_registered && state != "draining" && rules.registered.contains_key(&key) {
            Some(("initial", INITIAL_REASON, INITIAL_DESCRIPTION))
        } else {
            None
        };
        match replacement {
            Some((state, reason, description)) => {
                changed = true;
                members.push(with_health(member, state, reason, description));
            }
            None => members.push(member.to_owned()),
        }
        seen.push(key);
    }
    if !names_targets {
        // moto forgot them: add the group's draining targets.
        let mut draining: Vec<(&Key, &Draining)> = rules
            .draining
            .iter()
            .filter(|(key, _)| key.0 == arn && !seen.contains(key))
            .collect();
        draining.sort_by(|a, b| a.0.cmp(b.0));
        for ((_, id, port), drain) in draining {
            changed = true;
            members.push(format!(
                "<member><Target><Id>{}</Id><Port>{port}</Port></Target>\
                 <HealthCheckPort>{}</HealthCheckPort>\
                 <TargetHealth><State>draining</State><Reason>{DRAINING_REASON}</Reason>\
                 <Description>{DRAINING_DESCRIPTION}</Description></TargetHealth></member>",
                escape(id),
                escape(&drain.health_check_port),
            ));
        }
    }
    if !changed {
        return None;
    }
    let list = if members.is_empty() {
        EMPTY.to_owned()
    } else {
        format!("{OPEN}{}{CLOSE}", members.concat())
    };
    Some(format!("{}{list}{}", &body[..start], &body[end..]))
}

/// `member` (a whole `<member>...</member>`) with its TargetHealth replaced.
fn with_health(member: &str, state: &str, reason: &str, description: &str) -> String {
    let health = format!(
        "<TargetHealth><State>{state}</State><Reason>{reason}</Reason>\
         <Description>{description}</Description></TargetHealth>"
    );
    let span = member
        .find("<TargetHealth>")
        .and_then(|open| {
            let close = "</TargetHealth>";
            member[open..]
                .find(close)
                .map(|at| (open, open + at + close.len()))
        })
        .or_else(|| {
            let empty = "<TargetHealth/>";
            member.find(empty).map(|open| (open, open + empty.len()))
        });
    match span {
        Some((open, close)) => format!("{}{health}{}", &member[..open], &member[close..]),
        None => {
            let close = member.rfind("</member>").unwrap_or(member.len());
            format!("{}{health}{}", &member[..close], &member[close..])
        }
    }
}

/// The top-level `<member>...</member>` elements of a list's inner XML.
fn members_of(inner: &str) -> Vec<&str> {
    let mut members = Vec::new();
    let mut rest = inner;
    while let Some(open) = rest.find("<member>") {
        let mut depth = 0usize;
        let mut at = open;
        let end = loop {
            let next_open = rest[at..].find("<member>").map(|i| at + i);
            let next_close = rest[at..].find("</member>").map(|i| at + i);
            match (next_open, next_close) {
                (Some(o), Some(c)) if o < c => {
                    depth += 1;
                    at = o + "<member>".len();
                }
                (_, Some(c)) => {
                    depth -= 1;
                    at = c + "</member>".len();
                    if depth == 0 {
                        break Some(at);
                    }
                }
                _ => break None,
            }
        };
        let Some(end) = end else { break };
        members.push(&rest[open..end]);
        rest = &rest[end..];
    }
    members
}

fn first_member(list: &str) -> Option<&str> {
    members_of(list).into_iter().next()
}

/// The text of the first `<name>...</name>` in `xml`.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(&xml[start..end])
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').and_then(|semi| {
            let entity = &rest[1..semi];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let number = entity.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, semi + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The form fields of a query-protocol body, percent-decoded, in order.
fn form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `Targets.member.N.Id` and `.Port`, in the order of N.
fn targets(params: &[(String, String)]) -> Vec<(String, Option<u16>)> {
    let mut by_index: BTreeMap<u32, (Option<String>, Option<u16>)> = BTreeMap::new();
    for (name, value) in params {
        let Some(rest) = name.strip_prefix("Targets.member.") else {
            continue;
        };
        let Some((index, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(index) = index.parse() else { continue };
        let entry = by_index.entry(index).or_default();
        match field {
            "Id" => entry.0 = Some(value.clone()),
            "Port" => entry.1 = value.trim().parse().ok(),
            _ => {}
        }
    }
    by_index
        .into_values()
        .filter_map(|(id, port)| Some((id?, port)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (byte, None) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The value of the first header `name` (case-insensitive) in an HTTP head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, value) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(value.trim())
    })
}

fn is_chunked(head: &str) -> bool {
    header(head, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

/// A whole chunked body: the data and the bytes it took, or `None` while
/// incomplete (or malformed).
fn dechunk(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&data[at..], b"\r\n")?;
        let line = std::str::from_utf8(&data[at..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailers, if any, then the blank line.
            loop {
                let end = at + find(&data[at..], b"\r\n")?;
                let blank = end == at;
                at = end + 2;
                if blank {
                    return Some((body, at));
                }
            }
        }
        body.extend_from_slice(data.get(at..at + size)?);
        at += size;
        if data.get(at..at + 2)? != b"\r\n" {
            return None;
        }
        at += 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
