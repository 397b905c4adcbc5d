//! Service emulators and fixtures shared by edusync's tests.

pub mod cli;
pub mod dav;
pub mod google;
pub mod graph;
pub mod proxy;

/// A throwaway 2048-bit RSA key (PKCS#8 PEM) made for tests only
/// (`openssl genpkey -algorithm RSA`): signs service-account and
/// client-assertion JWTs that the emulators verify.
pub const TEST_RSA_KEY_PEM: &str = include_str!("../data/test-rsa-key.pem");

/// A self-signed certificate for [`TEST_RSA_KEY_PEM`] (`CN=edusync-test`), for
/// certificate credentials.
pub const TEST_CERT_PEM: &str = include_str!("../data/test-cert.pem");
