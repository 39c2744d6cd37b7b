//! Azure Blob Storage accounts: the `[azure.accounts.<name>]` configuration,
//! the credentials each uses, the SDK clients built from them, and the
//! mapping from a blob URL back to the configured account it belongs to.
//!
//! This is the only module that builds `azure_storage_blobs` clients; the
//! export destination and the import source ask it for one by account name
//! or by URL. An account is reached only if the configuration names it: a
//! request can never make the server talk to an account it was not given.

use std::collections::BTreeMap;
use std::fmt;

pub mod emulator;
pub mod retry;

use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::{BlobServiceClient, ClientBuilder, ContainerClient};
use serde::{Deserialize, Serialize};

/// The account name and key every Azure Storage emulator (Azurite) accepts;
/// public knowledge, not a secret.
pub const EMULATOR_ACCOUNT: &str = "devstoreaccount1";

/// `[azure]`: the storage accounts this server may use, by a local name
/// that the export and import sections refer to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AzureConfig {
    pub accounts: BTreeMap<String, AccountConfig>,
}

/// One storage account.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// The storage account's name (`devstoreaccount1` on the emulator).
    pub account: String,
    /// Blob service endpoint without a trailing slash; absent means
    /// `https://<account>.blob.core.windows.net`. Azurite's path-style
    /// endpoint is `http://127.0.0.1:10000/devstoreaccount1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub credential: Credential,
}

/// How requests to an account are authorised.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credential {
    /// Shared key (base64 account key). Needed to hand out SAS URLs.
    Key { key: String },
    /// An account or container SAS token (the query string, with or without
    /// the leading `?`).
    Sas { token: String },
    /// The emulator's well-known account key.
    Emulator,
}

/// Secrets never reach logs (`hearth config` does print them: it shows the
/// effective file an operator could have written).
impl fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountConfig")
            .field("account", &self.account)
            .field("endpoint", &self.endpoint)
            .field("credential", &self.credential)
            .finish()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::Key { .. } => "Key(<redacted>)",
            Credential::Sas { .. } => "Sas(<redacted>)",
            Credential::Emulator => "Emulator",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    #[error("no storage account named '{0}' is configured under [azure.accounts]")]
    UnknownAccount(String),
    #[error("azure.accounts.{name}: {message}")]
    Invalid { name: String, message: String },
}

/// A blob URL resolved against the configured accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// The local name of the account (`[azure.accounts.<name>]`).
    pub account: String,
    pub container: String,
    /// The blob's name inside the container (may contain `/`).
    pub blob: String,
}

/// The configured accounts, ready to hand out clients.
#[derive(Clone)]
pub struct Accounts {
    accounts: BTreeMap<String, Account>,
}

#[derive(Clone)]
struct Account {
    endpoint: String,
    service: BlobServiceClient,
}

impl AzureConfig {
    pub fn validate(&self) -> Result<(), AzureError> {
        for (name, account) in &self.accounts {
            account.endpoint_url(name)?;
            account.credentials(name)?;
        }
        Ok(())
    }
}

impl AccountConfig {
    fn endpoint_url(&self, name: &str) -> Result<String, AzureError> {
        let invalid = |message: String| AzureError::Invalid {
            name: name.to_owned(),
            message,
        };
        let valid_account = (3..=24).contains(&self.account.len())
            && self
                .account
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid_account {
            return Err(invalid(format!(
                "account '{}' is not a storage account name (3-24 lowercase letters and digits)",
                self.account
            )));
        }
        let endpoint = match &self.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => format!("https://{}.blob.core.windows.net", self.account),
        };
        let rest = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/') || r.contains(['?', '#'])) {
            return Err(invalid(format!(
                "endpoint '{endpoint}' is not an http:// or https:// URL without query"
            )));
        }
        Ok(endpoint)
    }

    fn credentials(&self, name: &str) -> Result<StorageCredentials, AzureError> {
        match &self.credential {
            Credential::Key { key } => Ok(StorageCredentials::access_key(
                self.account.clone(),
                azure_core::auth::Secret::new(key.clone()),
            )),
            Credential::Sas { token } => {
                StorageCredentials::sas_token(token.trim_start_matches('?')).map_err(|e| {
                    AzureError::Invalid {
                        name: name.to_owned(),
                        message: format!("credential.token is not a SAS token: {e}"),
                    }
                })
            }
            Credential::Emulator => Ok(StorageCredentials::emulator()),
        }
    }
}

impl Accounts {
    /// Builds a client per account; the configuration was validated.
    pub fn new(config: &AzureConfig) -> Result<Accounts, AzureError> {
        let mut accounts = BTreeMap::new();
        for (name, account) in &config.accounts {
            let endpoint = account.endpoint_url(name)?;
            let credentials = account.credentials(name)?;
            let location = CloudLocation::Custom {
                account: account.account.clone(),
                uri: endpoint.clone(),
            };
            // The SDK's own retries would hide an outage for minutes inside
            // one call; the destination and the import source retry with
            // their configured bounds and name the cause when they give up.
            let service = ClientBuilder::with_location(location, credentials)
                .retry(azure_core::RetryOptions::none())
                .blob_service_client();
            accounts.insert(name.clone(), Account { endpoint, service });
        }
        Ok(Accounts { accounts })
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.accounts.keys().map(String::as_str)
    }

    pub fn service(&self, name: &str) -> Result<&BlobServiceClient, AzureError> {
        self.accounts
            .get(name)
            .map(|a| &a.service)
            .ok_or_else(|| AzureError::UnknownAccount(name.to_owned()))
    }

    pub fn container(&self, name: &str, container: &str) -> Result<ContainerClient, AzureError> {
        Ok(self.service(name)?.container_client(container))
    }

    /// The blob service endpoint of an account, without a trailing slash.
    pub fn endpoint(&self, name: &str) -> Result<&str, AzureError> {
        self.accounts
            .get(name)
            .map(|a| a.endpoint.as_str())
            .ok_or_else(|| AzureError::UnknownAccount(name.to_owned()))
    }

    /// The public URL of a blob (no credentials in it).
    pub fn blob_url(&self, name: &str, container: &str, blob: &str) -> Result<String, AzureError> {
        let account = self
            .accounts
            .get(name)
            .ok_or_else(|| AzureError::UnknownAccount(name.to_owned()))?;
        Ok(format!(
            "{}/{container}/{}",
            account.endpoint,
            crate::percent::encode_path(blob)
        ))
    }

    /// Which configured account, container and blob `url` names; `None`
    /// when it is under no configured endpoint (or names no blob). Query
    /// and fragment are ignored: credentials come from the configuration,
    /// never from the request.
    pub fn resolve(&self, url: &str) -> Option<BlobLocation> {
        let url = url.split(['?', '#']).next().unwrap_or(url);
        self.accounts.iter().find_map(|(name, account)| {
            let rest = url
                .strip_prefix(account.endpoint.as_str())?
                .strip_prefix('/')?;
            let (container, blob) = rest.split_once('/')?;
            if container.is_empty() || blob.is_empty() {
                return None;
            }
            let blob = crate::percent::decode(blob)?;
            Some(BlobLocation {
                account: name.clone(),
                container: container.to_owned(),
                blob,
            })
        })
    }
}

/// Azure's container naming rule: 3-63 characters, lowercase letters,
/// digits and single hyphens, starting and ending with a letter or digit.
pub fn is_container_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> AzureConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn urls_resolve_only_under_configured_endpoints() {
        let accounts = Accounts::new(&config(
            r#"
            [accounts.dev]
            account = "devstoreaccount1"
            endpoint = "http://127.0.0.1:10000/devstoreaccount1/"
            credential = { kind = "emulator" }
            [accounts.prod]
            account = "contoso"
            credential = { kind = "sas", token = "?sv=2022-11-02&sig=abc" }
            "#,
        ))
        .unwrap();
        assert_eq!(
            accounts.resolve("http://127.0.0.1:10000/devstoreaccount1/in/a%20b/Patient.ndjson?x=1"),
            Some(BlobLocation {
                account: "dev".into(),
                container: "in".into(),
                blob: "a b/Patient.ndjson".into(),
            })
        );
        assert_eq!(
            accounts
                .resolve("https://contoso.blob.core.windows.net/c/x.ndjson")
                .map(|l| l.account),
            Some("prod".into())
        );
        for other in [
            "http://127.0.0.1:10001/devstoreaccount1/in/x",
            "http://127.0.0.1:10000/devstoreaccount1/in/",
            "http://127.0.0.1:10000/devstoreaccount1/in",
            "http://127.0.0.1:10000/devstoreaccount1x/in/x",
            "https://evil.blob.core.windows.net/c/x",
        ] {
            assert_eq!(accounts.resolve(other), None, "{other}");
        }
        assert_eq!(
            accounts.blob_url("dev", "out", "f/a b.ndjson").unwrap(),
            "http://127.0.0.1:10000/devstoreaccount1/out/f/a%20b.ndjson"
        );
        assert!(matches!(
            accounts.service("nope"),
            Err(AzureError::UnknownAccount(_))
        ));
    }

    #[test]
    fn bad_accounts_are_refused_and_secrets_never_printed() {
        for (bad, expect) in [
            (
                r#"[accounts.a]
                account = "Bad_Name"
                credential = { kind = "emulator" }"#,
                "account",
            ),
            (
                r#"[accounts.a]
                account = "good"
                endpoint = "ftp://x"
                credential = { kind = "emulator" }"#,
                "endpoint",
            ),
        ] {
            let err = config(bad).validate().unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
        }
        let c = config(
            r#"[accounts.a]
            account = "good"
            credential = { kind = "key", key = "c2VjcmV0" }"#,
        );
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn container_names_follow_azure_rules() {
        for good in [
            "abc",
            "hearth-export-1",
            "0f3c2d1e-aaaa-4bbb-8ccc-123456789012",
        ] {
            assert!(is_container_name(good), "{good}");
        }
        for bad in [
            "ab",
            "Abc",
            "a_b",
            "a.b",
            "-ab",
            "ab-",
            "a--b",
            &"a".repeat(64),
        ] {
            assert!(!is_container_name(bad), "{bad}");
        }
    }
}
