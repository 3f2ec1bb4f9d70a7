//! A plain-Rust image of the nf_tables expressions dockfw uses.
//!
//! Encoding turns a [`Rule`](dockfw_core::ruleset::Rule) into a list of
//! [`Expr`]s and the FFI layer turns those into libnftnl objects; decoding
//! goes the other way. Keeping this middle layer free of pointers lets the
//! rule <-> expression mapping be tested without a kernel.

/// One nf_tables expression. Registers are implicit: every expression that
/// loads or reads data uses `NFT_REG_1`; anything else decodes as [`Expr::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Expr {
    /// `meta load KEY => reg 1`.
    Meta { key: u32 },
    /// `cmp OP reg 1 DATA`.
    Cmp { op: u32, data: Vec<u8> },
    /// `bitwise reg 1 = (reg 1 & MASK) ^ XOR`.
    Bitwise { mask: Vec<u8>, xor: Vec<u8> },
    /// `ct load KEY => reg 1`, optionally for a direction.
    Ct { key: u32, dir: Option<u8> },
    /// `payload load LEN bytes @ BASE + OFFSET => reg 1`.
    Payload { base: u32, offset: u32, len: u32 },
    /// `lookup reg 1 @SET`.
    Lookup { set: String, flags: u32 },
    /// `range OP reg 1 FROM TO`.
    Range { op: u32, from: Vec<u8>, to: Vec<u8> },
    /// `limit` in packets.
    Limit {
        rate: u64,
        unit: u64,
        burst: u32,
        flags: u32,
    },
    /// `dynset OP reg_key 1 @SET` with embedded expressions.
    Dynset {
        op: u32,
        set: String,
        timeout_ms: u64,
        exprs: Vec<Expr>,
    },
    /// `connlimit count N flags F`.
    Connlimit { count: u32, flags: u32 },
    /// `log prefix "…"` (the kernel log), or with a group `log prefix "…"
    /// group N` (NFLOG).
    Log { prefix: String, group: Option<u16> },
    /// `counter` (values are ignored when encoding).
    Counter { packets: u64, bytes: u64 },
    /// `immediate reg 1 DATA`.
    Immediate { data: Vec<u8> },
    /// `ct set KEY with reg 1`.
    CtSet { key: u32 },
    /// `immediate reg 0` verdict, with a chain for jump/goto.
    Verdict { code: i32, chain: Option<String> },
    /// `reject type T code C`.
    Reject { kind: u32, code: u8 },
    /// Anything dockfw does not write, described for error messages.
    Other(String),
}

impl Expr {
    /// The libnftnl expression name.
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Meta { .. } => "meta",
            Self::Cmp { .. } => "cmp",
            Self::Bitwise { .. } => "bitwise",
            Self::Ct { .. } => "ct",
            Self::Payload { .. } => "payload",
            Self::Lookup { .. } => "lookup",
            Self::Range { .. } => "range",
            Self::Limit { .. } => "limit",
            Self::Dynset { .. } => "dynset",
            Self::Connlimit { .. } => "connlimit",
            Self::Log { .. } => "log",
            Self::Counter { .. } => "counter",
            Self::Verdict { .. } | Self::Immediate { .. } => "immediate",
            Self::CtSet { .. } => "ct",
            Self::Reject { .. } => "reject",
            Self::Other(name) => name,
        }
    }
}
