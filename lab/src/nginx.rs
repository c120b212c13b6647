//! A real nginx (Debian package) serving fixed files inside a namespace.

use std::path::{Path, PathBuf};

use crate::{Netns, Proc};

pub struct Nginx {
    pub proc: Option<Proc>,
    pub dir: PathBuf,
    pub port: u16,
    conf: PathBuf,
}

pub struct NginxOptions<'a> {
    /// Served as `/name` (and `/`): lets a test see which backend answered. (`/via`
    /// answers the address the request came from: the proxy node that forwarded it.)
    pub name: &'a str,
    pub port: u16,
    /// `listen ... proxy_protocol`; the access log then records `$proxy_protocol_addr`.
    pub proxy_protocol: bool,
    /// Size of `/big` (random bytes).
    pub big_bytes: usize,
    /// Serve TLS on `port` with this certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// With `tls`: require client certificates chaining to this CA file
    /// (`ssl_verify_client on`).
    pub client_ca: Option<PathBuf>,
}

impl Default for NginxOptions<'_> {
    fn default() -> Self {
        NginxOptions {
            name: "nginx",
            port: 8080,
            proxy_protocol: false,
            big_bytes: 2 << 20,
            tls: None,
            client_ca: None,
        }
    }
}

impl Nginx {
    /// Writes the config and content under `dir` and starts nginx in `ns`.
    pub fn start(ns: &Netns, dir: &Path, opts: NginxOptions<'_>) -> Nginx {
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::write(dir.join("www/name"), format!("{}\n", opts.name)).unwrap();
        std::fs::write(dir.join("www/index.html"), format!("{}\n", opts.name)).unwrap();
        let big: Vec<u8> = (0..opts.big_bytes)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        std::fs::write(dir.join("www/big"), big).unwrap();
        let pp = if opts.proxy_protocol {
            " proxy_protocol"
        } else {
            ""
        };
        let (ssl, mut certs) = match &opts.tls {
            None => ("", String::new()),
            Some((cert, key)) => (
                " ssl",
                format!(
                    "ssl_certificate {}; ssl_certificate_key {}; ",
                    cert.display(),
                    key.display()
                ),
            ),
        };
        if let Some(ca) = &opts.client_ca {
            certs += &format!(
                "ssl_verify_client on; ssl_client_certificate {}; ",
                ca.display()
            );
        }
        let d = dir.display();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "user root;\nworker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log info;\nevents {{ worker_connections 1024; }}\n\
                 http {{\n  log_format pp '$remote_addr pp=$proxy_protocol_addr \"$request\" $status $body_bytes_sent r=$ssl_session_reused';\n\
                   access_log {d}/access.log pp;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n\
                   fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
                   keepalive_requests 1000000;\n  keepalive_timeout 300s;\n\
                   server {{ listen {port}{ssl}{pp}; listen [::]:{port}{ssl}{pp}; {certs}root {d}/www;\n\
                     location = /via {{ default_type text/plain; return 200 \"$remote_addr\\n\"; }} }}\n}}\n",
                port = opts.port
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let mut n = Nginx {
            proc: None,
            dir: dir.to_owned(),
            port: opts.port,
            conf,
        };
        n.restart(ns);
        n
    }

    /// (Re)starts nginx with the same config and waits until it listens.
    pub fn restart(&mut self, ns: &Netns) {
        self.proc = Some(ns.spawn(&format!("nginx -c {}", self.conf.display())));
        ns.wait_listening(&[self.port])
            .unwrap_or_else(|e| panic!("nginx: {e:#}"));
    }

    /// Stops nginx (SIGTERM to the master, by PID) and waits until the port is closed.
    pub fn kill(&mut self, ns: &Netns) {
        if let Some(p) = self.proc.take() {
            p.stop();
        }
        ns.wait_closed(self.port)
            .unwrap_or_else(|e| panic!("nginx: {e:#}"));
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    pub fn big(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("www/big")).unwrap()
    }
}

/// The configuration of the benchmarks' backend: one worker serving `dir/www` on every
/// address in `listen` (`"10.77.0.2:80"`, or `"10.77.0.2:8443 ssl"` with
/// `dir/ec.pem` and `dir/ec.key`), built for load (no access log, sendfile, long
/// keep-alive, 19,000 connections).
pub fn bench_backend_conf(dir: &Path, listen: &[String]) -> String {
    bench_backend_conf_resumable(dir, listen, None)
}

/// [`bench_backend_conf`], plus HTTPS on `resumable` (an address) in a server that
/// resumes sessions (tickets and a session cache) and logs one line per request to
/// `dir/resumed.log`: `r` for a resumed TLS session, `.` for a full handshake.
pub fn bench_backend_conf_resumable(
    dir: &Path,
    listen: &[String],
    resumable: Option<&str>,
) -> String {
    let d = dir.display();
    let resumable = match resumable {
        Some(at) => format!(
            "log_format resumed '$ssl_session_reused';\n  \
             server {{ listen {at} ssl backlog=8192; ssl_certificate {d}/ec.pem; \
             ssl_certificate_key {d}/ec.key; ssl_session_tickets on; \
             ssl_session_cache shared:BACKEND:10m; \
             access_log {d}/resumed.log resumed buffer=64k flush=1s; root {d}/www; }}\n"
        ),
        None => String::new(),
    };
    let mut listen: String = listen
        .iter()
        .map(|a| format!("listen {a} backlog=8192; "))
        .collect();
    if listen.contains(" ssl ") {
        listen += &format!(
            "ssl_certificate {d}/ec.pem; ssl_certificate_key {d}/ec.key; ssl_session_tickets off; "
        );
    }
    format!(
        "worker_processes 1;\ndaemon off;\npid {d}/backend.pid;\nerror_log {d}/backend.err warn;\n\
         worker_rlimit_nofile 20000;\nevents {{ worker_connections 19000; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000000;\n\
           keepalive_timeout 300s;\n  client_header_timeout 300s;\n\
           server {{ {listen}root {d}/www; }}\n  {resumable}}}\n"
    )
}
