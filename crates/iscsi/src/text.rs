//! Text key=value data segments (RFC 7143 6.1). (Implementation to come.)
