//! Userspace tool formats (thin_dump XML, thin_ls tables): pure text ⇄ values, no pool access.
