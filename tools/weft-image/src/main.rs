//! `weft-image`: packs host files into a reproducible OCI image archive (`pack`),
//! verifies and describes one (`inspect`), and indexes several (`catalog`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use weft_image::catalog::Catalog;
use weft_image::contents::{AddSpec, Contents, DirSpec, SymlinkSpec, TreeSpec};
use weft_image::image::{ImageSpec, build};
use weft_image::inspect::{Archive, Summary};
use weft_image::oci::RunConfig;
use weft_image::reference::ImageRef;
use weft_image::{archive, recipe};

#[derive(Debug, Parser)]
#[command(
    name = "weft-image",
    version,
    about = "Reproducible OCI image archives (OCI layout + docker manifest.json in one tar), no daemon",
    long_about = "Writes image archives that `ctr images import`, `docker load`, `kind load image-archive` \
                  and `skopeo copy oci-archive:…|docker-archive:…` accept. The same inputs give the same \
                  bytes: entries sorted, one mtime (--epoch / SOURCE_DATE_EPOCH, default 0), owner 0:0 \
                  unless given, no user/group names, gzip header fixed. See docs/images.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pack files into a one-layer image archive.
    Pack(Box<PackArgs>),
    /// Verify an archive and print its reference, digests and sizes.
    Inspect(InspectArgs),
    /// Verify archives and write an images.json index of them.
    Catalog(CatalogArgs),
}

#[derive(Debug, Args)]
struct PackArgs {
    /// Image reference, e.g. `weft/proxy:0.1.0` or `weft.local/pause:3.10`.
    #[arg(long = "ref", value_name = "REF", required_unless_present = "recipe")]
    reference: Option<String>,
    /// A host file: `<host-path>=<image-path>[:<octal-mode>[:<uid>:<gid>]]`. Mode defaults
    /// to 0755 if the host file is executable, else 0644; owner to 0:0.
    #[arg(long = "add", value_name = "SPEC")]
    files: Vec<AddSpec>,
    /// A host directory tree, recursively: `<host-dir>=<image-dir>`. Symlinks are kept,
    /// file modes normalised as for --add, directories 0755 (unless also given by --dir).
    #[arg(long = "tree", value_name = "SPEC")]
    trees: Vec<TreeSpec>,
    /// A directory: `<image-path>[:<octal-mode>[:<uid>:<gid>]]` (default 0755, 0:0).
    #[arg(long = "dir", value_name = "SPEC")]
    dirs: Vec<DirSpec>,
    /// A symbolic link: `<image-path>=<target>`.
    #[arg(long = "symlink", value_name = "SPEC")]
    symlinks: Vec<SymlinkSpec>,
    /// File capabilities, as `setcap <caps>=+ep`: `<image-path>=<cap>[,<cap>…]`, e.g.
    /// `/coredns=cap_net_bind_service` (the path must be added by another flag).
    #[arg(long = "file-cap", value_name = "SPEC")]
    file_caps: Vec<weft_image::filecaps::FileCapSpec>,
    /// One element of the entrypoint argv (repeat for more).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    entrypoint: Vec<String>,
    /// One element of the default arguments (repeat for more).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    cmd: Vec<String>,
    /// User to run as, `uid[:gid]`.
    #[arg(long)]
    user: Option<String>,
    /// Environment variable `K=V` (repeat). `PATH` defaults to Docker's default PATH.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Working directory.
    #[arg(long)]
    workdir: Option<String>,
    /// Label `k=v` (repeat).
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// Architecture of the image.
    #[arg(long, default_value = "amd64")]
    arch: String,
    /// Timestamp of `created` and of every file, seconds since the epoch.
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    epoch: u64,
    /// Read further options from this file, one per line (`--name value`); see docs/images.md.
    #[arg(long, value_name = "FILE")]
    recipe: Option<PathBuf>,
    /// The archive to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The archive.
    archive: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Also list every file of the layers.
    #[arg(long)]
    files: bool,
}

#[derive(Debug, Args)]
struct CatalogArgs {
    /// The images.json to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// A fact about the build recorded under `meta`, `k=v` (repeat).
    #[arg(long = "meta", value_name = "K=V")]
    meta: Vec<String>,
    /// `NAME=ARCHIVE`, e.g. `proxy=/path/proxy.tar`.
    #[arg(required = true, value_name = "NAME=ARCHIVE")]
    images: Vec<String>,
}

fn key_values(flag: &str, items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{flag} {kv:?}: expected k=v"),
        })
        .collect()
}

/// Re-parses `pack` with the recipe's options placed before the command line's.
fn with_recipe(args: PackArgs) -> anyhow::Result<PackArgs> {
    let Some(file) = &args.recipe else {
        return Ok(args);
    };
    let mut argv: Vec<String> = vec!["weft-image".into(), "pack".into()];
    argv.extend(recipe::load(file)?);
    let mut rest = std::env::args().skip_while(|a| a != "pack").skip(1);
    while let Some(a) = rest.next() {
        if a == "--recipe" {
            rest.next();
        } else if !a.starts_with("--recipe=") {
            argv.push(a);
        }
    }
    match Cli::try_parse_from(&argv)
        .context("parsing the recipe's options")?
        .command
    {
        Command::Pack(p) => Ok(*p),
        _ => bail!("recipe did not parse as pack options"),
    }
}

fn pack(args: PackArgs) -> anyhow::Result<()> {
    let args = with_recipe(args)?;
    let Some(reference) = args.reference.as_deref() else {
        bail!("--ref is required (on the command line or in the recipe)");
    };
    let reference = ImageRef::parse(reference)?;
    let env = args.env.clone();
    if let Some(bad) = env.iter().find(|e| !e.contains('=')) {
        bail!("--env {bad:?}: expected K=V");
    }
    let spec = ImageSpec {
        reference,
        run: RunConfig {
            user: args.user.clone(),
            env,
            entrypoint: args.entrypoint.clone(),
            cmd: args.cmd.clone(),
            working_dir: args.workdir.clone(),
            labels: key_values("--label", &args.labels)?,
        },
        epoch: args.epoch,
        architecture: args.arch.clone(),
    };
    let contents = Contents {
        files: args.files,
        trees: args.trees,
        dirs: args.dirs,
        symlinks: args.symlinks,
        file_caps: args.file_caps,
    };
    let layer = contents.to_layer()?;
    let image = build(&spec, &layer)?;
    archive::write_file(&image, args.epoch, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let summary = Archive::open(&args.out)?
        .summary()
        .context("verifying the written archive")?;
    tracing::info!(
        reference = %summary.reference,
        manifest = %summary.manifest_digest,
        config = %summary.config_digest,
        compressed = summary.compressed_size,
        unpacked = summary.unpacked_size,
        out = %args.out.display(),
        "packed"
    );
    println!(
        "{} {} {} manifest={} config={} compressed={} unpacked={}",
        args.out.display(),
        summary.reference,
        summary.archive_sha256,
        summary.manifest_digest,
        summary.config_digest,
        summary.compressed_size,
        summary.unpacked_size
    );
    Ok(())
}

fn human(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    format!("{bytes} bytes ({mib:.2} MiB)")
}

fn print_text(s: &Summary) {
    let c = &s.config.config;
    println!("reference        {}", s.reference);
    println!("ref.name         {}", s.ref_name);
    println!("repo tags        {}", s.repo_tags.join(", "));
    println!("manifest digest  {}", s.manifest_digest);
    println!("config digest    {}", s.config_digest);
    println!("layers           {}", s.layers.len());
    println!("compressed size  {}", human(s.compressed_size));
    println!("unpacked size    {}", human(s.unpacked_size));
    println!("archive          {} {}", human(s.archive_size), s.archive_sha256);
    println!("entrypoint       {:?}", c.entrypoint);
    println!("cmd              {:?}", c.cmd);
    println!("user             {}", c.user.as_deref().unwrap_or("(root)"));
    for e in &c.env {
        println!("env              {e}");
    }
    for (k, v) in &c.labels {
        println!("label            {k}={v}");
    }
}

fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let archive = Archive::open(&args.archive)?;
    let summary = archive.summary()?;
    let files = if args.files { Some(archive.files()?) } else { None };
    match args.output {
        Format::Json => {
            let mut v = serde_json::to_value(&summary)?;
            if let (Some(files), Some(obj)) = (files, v.as_object_mut()) {
                obj.insert("files".into(), serde_json::to_value(files)?);
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Text => {
            print_text(&summary);
            for f in files.iter().flatten() {
                let link = f.link.as_ref().map(|l| format!(" -> {l}")).unwrap_or_default();
                println!(
                    "{:04o} {}:{} {:>9} {}{link}",
                    f.mode, f.uid, f.gid, f.size, f.path
                );
            }
        }
    }
    Ok(())
}

fn catalog(args: CatalogArgs) -> anyhow::Result<()> {
    let cat = Catalog::build(&args.images, key_values("--meta", &args.meta)?)?;
    cat.save(&args.out)?;
    tracing::info!(out = %args.out.display(), images = cat.images.len(), "catalog written");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match Cli::parse().command {
        Command::Pack(a) => pack(*a),
        Command::Inspect(a) => inspect(a),
        Command::Catalog(a) => catalog(a),
    }
}
