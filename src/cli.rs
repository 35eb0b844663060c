//! Subcommands: `killkrill create-user` creates a user (the first admin of a production
//! install, which never gets a default password).

use std::io::BufRead;

use crate::{
    auth::Role,
    bootstrap::{self, CreateUserError},
    config::Config,
    db::Database,
    identity::Identity,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a user; the password is read from standard input (one line).
    CreateUser(CreateUserArgs),
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

/// Runs a subcommand against the configured database.
pub async fn run(config: Config, command: Command) -> anyhow::Result<()> {
    match command {
        Command::CreateUser(args) => create_user(config, args).await,
    }
}

async fn create_user(config: Config, args: CreateUserArgs) -> anyhow::Result<()> {
    let roles = args
        .roles
        .iter()
        .map(|name| {
            Role::parse(name)
                .ok_or_else(|| anyhow::anyhow!("--role: unknown role `{name}` (admin, maintainer, viewer)"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    let db = Database::open(&config).await?;
    let identity = Identity::new(db.conn().clone(), &config);
    let result = bootstrap::create_user(&identity, &args.username, &args.email, roles, password).await;
    db.close().await;
    match result {
        Ok(user) => {
            println!("{}", serde_json::to_string(&user)?);
            Ok(())
        }
        Err(CreateUserError::Invalid(message)) => Err(anyhow::anyhow!("create-user: {message}")),
        Err(err) => Err(anyhow::anyhow!("create-user: {err}")),
    }
}
