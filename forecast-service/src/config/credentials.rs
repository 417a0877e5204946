//! RTE credentials: from files of their own or the environment, never
//! from the config file, and never shown in errors.

use std::path::Path;

use delestage_runtime::options::{Origin, Origins};
use secrecy::SecretString;

use super::{
    CLIENT_ID_ENV, CLIENT_SECRET_ENV, Options, TEMPO_CLIENT_ID_ENV, TEMPO_CLIENT_SECRET_ENV,
};
use crate::Error;
use crate::rte::Credentials;

/// Where one credential pair comes from: the options naming its files, and
/// the environment variables.
pub(super) struct CredentialKeys {
    id_file: fn(&Options) -> Option<&Path>,
    id_key: &'static str,
    id_env: &'static str,
    secret_file: fn(&Options) -> Option<&Path>,
    secret_key: &'static str,
    secret_env: &'static str,
}

pub(super) const ECOWATT_CREDENTIALS: CredentialKeys = CredentialKeys {
    id_file: |o| o.client_id_file.as_deref(),
    id_key: "client_id_file",
    id_env: CLIENT_ID_ENV,
    secret_file: |o| o.client_secret_file.as_deref(),
    secret_key: "client_secret_file",
    secret_env: CLIENT_SECRET_ENV,
};

pub(super) const TEMPO_CREDENTIALS: CredentialKeys = CredentialKeys {
    id_file: |o| o.tempo_client_id_file.as_deref(),
    id_key: "tempo_client_id_file",
    id_env: TEMPO_CLIENT_ID_ENV,
    secret_file: |o| o.tempo_client_secret_file.as_deref(),
    secret_key: "tempo_client_secret_file",
    secret_env: TEMPO_CLIENT_SECRET_ENV,
};

/// A credential pair; `purpose` ends what the errors call it ("client id{purpose}").
pub(super) fn credentials(
    o: &Options,
    keys: &CredentialKeys,
    purpose: &str,
    origins: &Origins,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, Error> {
    Ok(Credentials {
        client_id: credential(
            (keys.id_file)(o),
            keys.id_env,
            &format!("client id{purpose}"),
            &origins.of(keys.id_key),
            env,
        )?,
        client_secret: credential(
            (keys.secret_file)(o),
            keys.secret_env,
            &format!("client secret{purpose}"),
            &origins.of(keys.secret_key),
            env,
        )?,
    })
}

/// One credential: from its file when one is named, else from the
/// environment. Errors name the flag or variable, never the value.
fn credential(
    file: Option<&Path>,
    var: &str,
    what: &str,
    origin: &Origin,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SecretString, Error> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Config(format!("{origin}: cannot read {}: {e}", path.display()))
            })?;
            let value = text.trim();
            if value.is_empty() {
                return Err(Error::Config(format!(
                    "{origin}: {} is empty",
                    path.display()
                )));
            }
            Ok(SecretString::from(value.to_owned()))
        }
        None => match env(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        {
            Some(value) => Ok(SecretString::from(value)),
            None => Err(Error::Config(format!(
                "no RTE {what}: set {var} or {origin} (or serve a file with --source file --file PATH)"
            ))),
        },
    }
}
