//! The products under test and what each needs: certificates, the nginx backend,
//! and the load balancer configuration of `proxy` (typed, through the lab), HAProxy
//! and NGINX stream.

use std::path::Path;

use lab::certs::{self, KeyType};
use lab::config::*;

use super::{
    BACKEND_HTTP, BACKEND_IPERF, BACKEND_TLS, BACKEND_TLS_RESUMABLE, GEN_IP, PORT_EC, PORT_IPERF,
    PORT_PASS, PORT_PLAIN, PORT_REENCRYPT, PORT_REENCRYPT_FULL, PORT_ROUTED, PORT_RSA, SERVER_NAME,
    STREAM_MODULE,
};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Product {
    Proxy,
    /// The proxy built from another binary (`--baseline-proxy`), for before/after.
    ProxyBase,
    Haproxy,
    Nginx,
}

impl Product {
    pub fn label(self) -> &'static str {
        match self {
            Product::Proxy => "proxy",
            Product::ProxyBase => "proxy (base)",
            Product::Haproxy => "HAProxy",
            Product::Nginx => "NGINX",
        }
    }
}

/// `ec.pem`/`ec.key` and `rsa.pem`/`rsa.key` for SERVER_NAME (and the names of the
/// routes before it: a terminated route needs a certificate for its names), plus the
/// combined `<stem>.haproxy.pem` HAProxy wants.
pub fn write_certs(d: &Path) -> anyhow::Result<()> {
    let names = [
        SERVER_NAME,
        "api.example.com",
        "*.api.example.com",
        "*.other.test",
    ];
    for (stem, key_type) in [("ec", KeyType::EcdsaP256), ("rsa", KeyType::Rsa2048)] {
        let files = certs::try_write(d, stem, key_type, SERVER_NAME, &names)?;
        let combined =
            std::fs::read_to_string(&files.cert)? + &std::fs::read_to_string(&files.key)?;
        std::fs::write(d.join(format!("{stem}.haproxy.pem")), combined)?;
    }
    Ok(())
}

/// HTTP, HTTPS for the passthrough figure (the backend terminates TLS there), and
/// HTTPS that resumes sessions for the re-encryption figure.
pub fn backend_nginx_conf(d: &Path) -> String {
    let listen = [
        format!("{GEN_IP}:{BACKEND_HTTP}"),
        format!("{GEN_IP}:{BACKEND_TLS} ssl"),
    ];
    let resumable = format!("{GEN_IP}:{BACKEND_TLS_RESUMABLE}");
    lab::nginx::bench_backend_conf_resumable(d, &listen, Some(&resumable))
}

/// The re-encrypting pools: the backend's certificate verified against `ec.pem`
/// for SERVER_NAME, sessions resumed or not.
fn reencrypt_pool(d: &Path, name: &str, resumption: bool) -> Pool {
    let mut tls = BackendTls::new(d.join("ec.pem"));
    tls.server_name = Some(SERVER_NAME.into());
    tls.resumption = resumption;
    let backend = addr(format!("{GEN_IP}:{BACKEND_TLS_RESUMABLE}"));
    Pool::new(name, [backend]).tls(tls).health(Health::off())
}

/// The SNI routes of the proxy's routed listeners: two that do not match
/// SERVER_NAME before the one that does, as a site with a few services has.
fn routes(listener: Listener, pool: &str, passthrough: bool) -> Listener {
    let last = Route::new(&[SERVER_NAME], pool);
    let last = if passthrough {
        last.passthrough()
    } else {
        last
    };
    listener
        .route(Route::new(&["api.example.com", "*.api.example.com"], pool))
        .route(Route::new(&["*.other.test"], pool))
        .route(last)
}

/// The proxy's listeners on `lb_ip`.
pub fn proxy_conf(d: &Path, lb_ip: &str) -> String {
    let tls = |name: &str, port: u16, stem: &str| {
        let files = certs::CertFiles {
            cert: d.join(format!("{stem}.pem")),
            key: d.join(format!("{stem}.key")),
            common_name: SERVER_NAME.into(),
        };
        Listener::new(name, addr(format!("{lb_ip}:{port}")), "web").tls(tls(&files))
    };
    let passthrough = Listener::new("pass", addr(format!("{lb_ip}:{PORT_PASS}")), "tlsweb");
    Config::new()
        .with_listener(tls("ec", PORT_EC, "ec"))
        .with_listener(routes(tls("routed", PORT_ROUTED, "ec"), "web", false))
        .with_listener(routes(passthrough, "tlsweb", true))
        .with_listener(tls("rsa", PORT_RSA, "rsa"))
        .with_listener(Listener {
            pool: "reencrypt".into(),
            ..tls("reencrypt", PORT_REENCRYPT, "ec")
        })
        .with_listener(Listener {
            pool: "reencrypt-full".into(),
            ..tls("reencrypt-full", PORT_REENCRYPT_FULL, "ec")
        })
        .with_listener(Listener::new(
            "plain",
            addr(format!("{lb_ip}:{PORT_PLAIN}")),
            "web",
        ))
        .with_listener(Listener::new(
            "iperf",
            addr(format!("{lb_ip}:{PORT_IPERF}")),
            "iperf",
        ))
        .with_pool(
            Pool::new("web", addrs(&[format!("{GEN_IP}:{BACKEND_HTTP}")])).health(Health::off()),
        )
        .with_pool(
            Pool::new("iperf", addrs(&[format!("{GEN_IP}:{BACKEND_IPERF}")])).health(Health::off()),
        )
        .with_pool(reencrypt_pool(d, "reencrypt", true))
        .with_pool(reencrypt_pool(d, "reencrypt-full", false))
        .with_pool(
            Pool::new("tlsweb", addrs(&[format!("{GEN_IP}:{BACKEND_TLS}")])).health(Health::off()),
        )
        .with_limits(Limits {
            max_connections: 9900,
        })
        .with_log(Log {
            level: "warn".into(),
            ..Log::default()
        })
        // Its own admin socket, and no metrics endpoint: several proxies can run at
        // once (the interleaved latency figure) and none meets a daemon of the host.
        .with_admin(AdminSection {
            socket: d.join(format!("{lb_ip}-admin.sock")),
            metrics: None,
        })
        .to_toml()
}

pub fn haproxy_conf(d: &Path, lb_ip: &str) -> String {
    let d = d.display();
    let verified = format!(
        "ssl verify required ca-file {d}/ec.pem sni str({SERVER_NAME}) verifyhost {SERVER_NAME}"
    );
    format!(
        "global\n  nbthread 1\n  maxconn 9900\n\
         defaults\n  mode tcp\n  maxconn 9900\n  timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n\
         frontend ec\n  bind {lb_ip}:{PORT_EC} ssl crt {d}/ec.haproxy.pem\n  default_backend web\n\
         frontend rsa\n  bind {lb_ip}:{PORT_RSA} ssl crt {d}/rsa.haproxy.pem\n  default_backend web\n\
         frontend plain\n  bind {lb_ip}:{PORT_PLAIN}\n  default_backend web\n\
         frontend iperf\n  bind {lb_ip}:{PORT_IPERF}\n  default_backend iperf\n\
         frontend pass\n  bind {lb_ip}:{PORT_PASS}\n  tcp-request inspect-delay 5s\n\
           tcp-request content accept if {{ req_ssl_hello_type 1 }}\n\
           use_backend tlsweb if {{ req.ssl_sni -i api.example.com }}\n\
           use_backend tlsweb if {{ req.ssl_sni -m end .other.test }}\n\
           use_backend tlsweb if {{ req.ssl_sni -i {SERVER_NAME} }}\n\
         frontend reencrypt\n  bind {lb_ip}:{PORT_REENCRYPT} ssl crt {d}/ec.haproxy.pem\n  default_backend reencrypt\n\
         frontend reencrypt_full\n  bind {lb_ip}:{PORT_REENCRYPT_FULL} ssl crt {d}/ec.haproxy.pem\n  default_backend reencrypt_full\n\
         backend reencrypt\n  server b1 {GEN_IP}:{BACKEND_TLS_RESUMABLE} {verified}\n\
         backend reencrypt_full\n  server b1 {GEN_IP}:{BACKEND_TLS_RESUMABLE} {verified} no-ssl-reuse\n\
         backend tlsweb\n  server b1 {GEN_IP}:{BACKEND_TLS}\n\
         backend web\n  server b1 {GEN_IP}:{BACKEND_HTTP}\n\
         backend iperf\n  server b1 {GEN_IP}:{BACKEND_IPERF}\n"
    )
}

pub fn lb_nginx_conf(d: &Path, lb_ip: &str) -> String {
    let d = d.display();
    let tls_to = |port: u16, stem: &str, pool: &str, extra: &str| {
        format!(
            "  server {{ listen {lb_ip}:{port} ssl; ssl_certificate {d}/{stem}.pem; \
             ssl_certificate_key {d}/{stem}.key; proxy_pass {pool};{extra} }}\n"
        )
    };
    let tls = |port: u16, stem: &str| tls_to(port, stem, "web", "");
    let verified = |reuse: &str| {
        format!(
            " proxy_ssl on; proxy_ssl_verify on; proxy_ssl_trusted_certificate {d}/ec.pem; \
             proxy_ssl_name {SERVER_NAME}; proxy_ssl_server_name on; proxy_ssl_session_reuse {reuse};"
        )
    };
    let reencrypt = tls_to(PORT_REENCRYPT, "ec", "reencrypt", &verified("on"))
        + &tls_to(PORT_REENCRYPT_FULL, "ec", "reencrypt", &verified("off"));
    format!(
        "load_module {STREAM_MODULE};\nworker_processes 1;\ndaemon off;\npid {d}/lbnginx-{lb_ip}.pid;\n\
         error_log {d}/lbnginx-{lb_ip}.err warn;\nworker_rlimit_nofile 20000;\n\
         events {{ worker_connections 19900; }}\n\
         stream {{\n  proxy_timeout 300s;\n  ssl_protocols TLSv1.2 TLSv1.3;\n  ssl_session_cache shared:SSL:10m;\n  upstream web {{ server {GEN_IP}:{BACKEND_HTTP}; }}\n\
           upstream iperf {{ server {GEN_IP}:{BACKEND_IPERF}; }}\n\
           upstream tlsweb {{ server {GEN_IP}:{BACKEND_TLS}; }}\n\
           upstream reencrypt {{ server {GEN_IP}:{BACKEND_TLS_RESUMABLE}; }}\n{reencrypt}\
           map $ssl_preread_server_name $by_name {{ api.example.com tlsweb; ~\\.other\\.test$ tlsweb; {SERVER_NAME} tlsweb; default tlsweb; }}\n\
           server {{ listen {lb_ip}:{PORT_PASS}; ssl_preread on; proxy_pass $by_name; }}\n{}{}\
           server {{ listen {lb_ip}:{PORT_PLAIN}; proxy_pass web; }}\n\
           server {{ listen {lb_ip}:{PORT_IPERF}; proxy_pass iperf; }}\n}}\n",
        tls(PORT_EC, "ec"),
        tls(PORT_RSA, "rsa"),
    )
}
