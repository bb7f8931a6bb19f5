//! berth's CRI v1 front end: the gRPC server behind `berth daemon`.
//!
//! This crate is the only part of berth that knows protobuf, gRPC or an
//! async executor. It translates CRI calls into calls of the synchronous
//! library crates (run on tokio's blocking pool) and their answers back; it
//! holds no lifecycle logic of its own.
//!
//! - [`proto`]: the types, server traits and clients generated from
//!   kubernetes/cri-api's `api.proto` (vendored in `proto/`).
//! - [`config`]: the daemon's TOML configuration, with its defaults.
//! - [`server`]: serving RuntimeService and ImageService on a unix socket,
//!   with graceful shutdown.
//! - [`client`]: connecting a generated client to a unix socket (tests,
//!   tools).

// tonic's `Status` (176 bytes) is the error type its generated service
// traits fix; boxing it in the helpers only to unbox it at the trait
// boundary would buy nothing.
#![allow(clippy::result_large_err)]

pub mod client;
pub mod config;
mod errors;
mod handlers;
mod images;
mod runtime;
pub mod server;

/// The generated CRI v1 API (`runtime.v1`).
#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod proto {
    tonic::include_proto!("runtime.v1");

    impl std::fmt::Debug for AuthConfig {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let set = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
            f.debug_struct("AuthConfig")
                .field("username", &self.username)
                .field("password", &set(&self.password))
                .field("auth", &set(&self.auth))
                .field("server_address", &self.server_address)
                .field("identity_token", &set(&self.identity_token))
                .field("registry_token", &set(&self.registry_token))
                .finish()
        }
    }
}

/// The CRI API version this server speaks.
pub const RUNTIME_API_VERSION: &str = "v1";
/// The runtime name reported by `Version`.
pub const RUNTIME_NAME: &str = "berth";

#[cfg(test)]
#[path = "../proto/strip.rs"]
mod strip;

#[cfg(test)]
mod strip_tests {
    use super::strip::strip;

    #[test]
    fn removes_gogo_import_file_options_and_field_options() {
        let src = "syntax = \"proto3\";\n\
                   import \"github.com/gogo/protobuf/gogoproto/gogo.proto\";\n\
                   option (gogoproto.goproto_stringer_all) = false;\n\
                   message A {\n\
                   \x20   string x = 1 [(gogoproto.customname) = \"X\"];\n\
                   \x20   string y = 2 [(gogoproto.nullable) = false, deprecated = true]; // why\n\
                   \x20   string password = 3 [debug_redact = true];\n\
                   }\n";
        let out = strip(src).unwrap();
        assert_eq!(
            out,
            "syntax = \"proto3\";\n\
             message A {\n\
             \x20   string x = 1;\n\
             \x20   string y = 2 [deprecated = true]; // why\n\
             \x20   string password = 3;\n\
             }\n"
        );
    }

    #[test]
    fn leaves_other_lines_alone_and_refuses_what_it_cannot_strip() {
        let src = "// brackets in a comment [x] stay\nmessage B { map<string, string> m = 1; }\n";
        assert_eq!(strip(src).unwrap(), src);
        let err = strip("message C {\n  string s = 1 [ (gogoproto.x) = 1\n  ];\n}\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn the_vendored_proto_strips_to_one_without_either_option() {
        let src = include_str!("../proto/api.proto");
        let out = strip(src).unwrap();
        assert!(!out.contains("debug_redact") && !out.contains("gogoproto"));
        // Only option text went: every message and rpc is still there.
        assert_eq!(src.matches("rpc ").count(), out.matches("rpc ").count());
        assert_eq!(out.lines().count(), src.lines().count());
    }
}
