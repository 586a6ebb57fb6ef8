//! e2e: runs the real broker and collectors as OS processes and checks what they do.
#![forbid(unsafe_code)]
