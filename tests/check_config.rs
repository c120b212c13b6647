//! `proxy check-config`: exit status and messages for good and bad files. No root.

use std::process::Command;

use lab::certs::{self, KeyType};

fn check(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("check-config")
        .arg(path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn config(cert: &str, key: &str, extra: &str) -> String {
    format!(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8443"
pool = "app"
{extra}
[listener.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]

[[pool]]
name = "app"
backends = [{{ address = "127.0.0.1:8080" }}]
"#
    )
}

#[test]
fn check_config_reports_file_line_key_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let ec = certs::write(dir.path(), "ec", KeyType::EcdsaP256, "a.test", &["a.test"]);
    let other = certs::write(
        dir.path(),
        "other",
        KeyType::EcdsaP256,
        "b.test",
        &["b.test"],
    );
    let file = dir.path().join("proxy.toml");
    let (cert, key) = (ec.cert.display().to_string(), ec.key.display().to_string());
    let shown = file.display().to_string();

    std::fs::write(&file, config(&cert, &key, "")).unwrap();
    let (ok, text) = check(&file);
    assert!(ok, "{text}");
    assert_eq!(
        text,
        format!("{shown}: OK\nauto-blocking: off (no [autoblock] section)\n")
    );

    let cases = [
        (
            config(&cert, &key, "max_conections = 10"),
            format!("{shown}:5:1: `listener[0].max_conections`: unknown field `max_conections`"),
        ),
        (
            config(&cert, &key, "max_per_source = -1"),
            format!("{shown}:5:18: `listener[0].max_per_source`: invalid value"),
        ),
        (
            config(&format!("{cert}.missing"), &key, ""),
            format!(
                "{shown}:7:17: `listener[0].tls.certificates[0]`: cannot read \"{cert}.missing\": No such file or directory"
            ),
        ),
        (
            config(&key, &key, ""),
            format!("`listener[0].tls.certificates[0]`: \"{key}\" holds no PEM certificate"),
        ),
        (
            config(&cert, &other.key.display().to_string(), ""),
            "does not belong to the certificate".to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[xdp]\ninterfaces = [\"eth0\"]\nblocklist = [\"10.0.0.1/8\"]\n",
            "\"10.0.0.1/8\" has host bits set: write 10.0.0.0/8 for the network or 10.0.0.1/32"
                .to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[listener.tls.client_auth]\nca = \"/nonexistent/ca.pem\"\n",
            "`listener[0].tls.client_auth.ca`: cannot read \"/nonexistent/ca.pem\"".to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[bgp]\nlocal_as = 65001\nrouter_id = \"10.0.0.1\"\n\
                   [[bgp.peer]]\naddress = \"10.0.0.254\"\nas = 65000\n\
                   [[bgp.vip]]\naddress = \"192.0.2.10\"\nlisteners = [\"webb\"]\n",
            "`bgp.vip[0].listeners[0]`: no [[listener]] named \"webb\" (listeners: [\"web\"])"
                .to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[bgp]\nlocal_as = 65001\nrouter_id = \"10.0.0.1\"\n\
                   [[bgp.peer]]\naddress = \"10.0.0.254\"\nas = 65000\n\
                   [[bgp.vip]]\naddress = \"2001:db8::10\"\nlisteners = [\"web\"]\n",
            "`bgp.vip[0].address`: 2001:db8::10: no IPv6 peer to announce it to".to_string(),
        ),
        (
            config(&cert, &key, "syn_cookies = \"sometimes\""),
            format!("{shown}:5:15: `listener[0].syn_cookies`: unknown variant `sometimes`"),
        ),
        (
            config(&cert, &key, "syn_cookies = \"on\""),
            "`listener[0].syn_cookies`: SYN cookies are answered by the XDP program: add an [xdp] section"
                .to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[xdp]\ninterfaces = [\"eth0\"]\n[xdp.service_filter]\nallow = [\"22/sctp\"]\n",
            "\"22/sctp\": protocol \"sctp\" is not tcp or udp".to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[xdp]\ninterfaces = [\"eth0\"]\n[xdp.service_filter]\nallow = [\"0/tcp\"]\n",
            "\"0/tcp\": \"0\" is not a port (1-65535)".to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[xdp]\ninterfaces = [\"eth0\"]\nsyn_cookies = { auto_on_syn_per_second = 0 }\n",
            "`xdp.syn_cookies.auto_on_syn_per_second`: must be at least 1".to_string(),
        ),
        (
            config(&cert, &key, "").replace("name = \"web\"", "name = \"we\\\"b\""),
            format!("{shown}:2:1: `listener[0].name`: \"we\\\"b\" is not a valid name"),
        ),
    ];
    for (text_in, want) in cases {
        std::fs::write(&file, text_in).unwrap();
        let (ok, text) = check(&file);
        assert!(!ok, "accepted:\n{text}");
        assert!(text.contains(&want), "want {want:?} in:\n{text}");
    }
}
