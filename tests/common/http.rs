//! A stand-in HTTP/1.1 server on 127.0.0.1 for the endpoints the metrics agent asks (instance
//! metadata, the ECS agent's introspection and task metadata APIs): one request per connection,
//! each answered by a handler the test writes, every request line recorded.
//!
//! It reads the request line and headers only (the agent sends no bodies to these endpoints),
//! closes each connection after one answer, and never decides what an endpoint says: that is the
//! handler's job.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request as the server read it.
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, values trimmed, in the order sent.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of the first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The answer to one request: status line text, extra headers, body and its content type.
pub struct Response {
    pub status: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    /// `200 OK` with a `text/plain` body.
    pub fn text(body: impl Into<String>) -> Response {
        Response {
            status: "200 OK",
            headers: Vec::new(),
            content_type: "text/plain",
            body: body.into(),
        }
    }

    /// `200 OK` with `value` as an `application/json` body.
    pub fn json(value: &serde_json::Value) -> Response {
        Response {
            content_type: "application/json",
            ..Response::text(value.to_string())
        }
    }

    /// `404 Not Found`, empty, with the content type the endpoint would give.
    pub fn not_found(content_type: &'static str) -> Response {
        Response {
            status: "404 Not Found",
            content_type,
            ..Response::text("")
        }
    }

    /// This response with one more header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// A running stand-in: its port and the requests it has read.
pub struct Server {
    pub port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// `http://127.0.0.1:<port>`, for an endpoint setting.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests read so far, as `METHOD path`, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Serves on a free port of 127.0.0.1 from a thread that lives as long as the test process,
/// answering every request with `handler`.
pub fn serve(handler: impl Fn(&Request) -> Response + Send + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // A client that hangs up early costs that one connection, never the server.
            let Some(request) = read_request(&stream) else {
                continue;
            };
            if let Ok(mut log) = log.lock() {
                log.push(format!("{} {}", request.method, request.path));
            }
            write_response(stream, &handler(&request));
        }
    });
    Server { port, seen }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    Some(Request {
        method,
        path,
        headers,
    })
}

fn write_response(mut stream: TcpStream, r: &Response) {
    let extra: String = r
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let _ = write!(
        stream,
        "HTTP/1.1 {}\r\n{extra}Content-Length: {}\r\nContent-Type: {}\r\nConnection: close\r\n\r\n{}",
        r.status,
        r.body.len(),
        r.content_type,
        r.body
    );
}
