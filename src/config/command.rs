//! The subcommands of the command line (`killkrill create-user`, `killkrill healthcheck`);
//! `cli::run` carries them out.

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a user; the password is read from standard input (one line).
    CreateUser(CreateUserArgs),
    /// Exit 0 if the server on this machine answers `GET /livez` with 200, else 1.
    /// For container HEALTHCHECKs on images without curl.
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// Path to probe.
    #[arg(long, default_value = "/livez")]
    pub path: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct CreateUserArgs {
    #[arg(long)]
    pub username: String,
    #[arg(long)]
    pub email: String,
    /// Role to grant (repeatable): admin, maintainer or viewer.
    #[arg(long = "role", default_value = "viewer")]
    pub roles: Vec<String>,
    /// Read the password from standard input (required: passwords never go on the command line).
    #[arg(long, required = true)]
    pub password_stdin: bool,
}
