//! A second mutating webhook for case 6.
#![allow(dead_code)]
