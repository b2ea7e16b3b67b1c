//! CHAP with MD5 (RFC 1994, RFC 7143 12.1.3). (Implementation to come.)
