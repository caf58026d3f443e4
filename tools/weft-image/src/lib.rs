//! `weft-image`: reproducible OCI image archives without a container daemon.
//!
//! An image is one layer ([`layer`]) filled from host files ([`contents`]), wrapped in
//! an OCI config, manifest and index ([`image`], [`oci`]) and written as a tar that is
//! both an OCI image layout and a Docker archive ([`archive`]), so `ctr images import`,
//! `docker load`, `kind load image-archive` and skopeo's `oci-archive:` and
//! `docker-archive:` transports all read it. [`inspect`] reads one back and verifies it;
//! [`recipe`] and [`catalog`] serve the build that packs weft's own images.

pub mod archive;
pub mod catalog;
pub mod contents;
pub mod filecaps;
pub mod image;
pub mod inspect;
pub mod layer;
pub mod oci;
pub mod recipe;
pub mod reference;
