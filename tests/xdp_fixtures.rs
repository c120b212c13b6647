//! BPF_PROG_TEST_RUN fixtures for the XDP program.
mod harness;
