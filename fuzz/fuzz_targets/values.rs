//! The value parsers of the configuration and the CLI: CIDRs, durations, and whole
//! command lines. Never a panic; what parses is canonical.
#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use proxy::config::{cidr, duration};

fuzz_target!(|text: &str| {
    if let Ok(net) = cidr::parse(text) {
        assert_eq!(
            net,
            net.trunc(),
            "{text:?} parsed to a prefix with host bits"
        );
        assert_eq!(
            cidr::parse(&net.to_string()),
            Ok(net),
            "round trip of {text:?}"
        );
    }
    let _ = duration::parse(text);
    let args = std::iter::once("proxy").chain(text.split(' '));
    let _ = proxy::cli::Cli::try_parse_from(args);
});
