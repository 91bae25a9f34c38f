//! The command line, and the `confab://space/<ID>` links that may ride on it.

use clap::Parser;
use confab_proto::SpaceId;

/// `confab [--profile NAME] [--server URL] [confab://space/<ID>]`
#[derive(Debug, Parser)]
#[command(
    name = "confab",
    version,
    about = "Confab: browse, join and host live audio spaces"
)]
pub struct Args {
    /// A separate identity and database (a-z, 0-9, _ and -); one instance runs per profile.
    #[arg(long, default_value = "default")]
    pub profile: String,

    /// The server to use instead of the saved setting or the embedded server.
    #[arg(long, env = "CONFAB_SERVER")]
    pub server: Option<String>,

    /// Open no audio device (a machine without sound, or a screenshot run).
    #[arg(long)]
    pub no_audio: bool,

    /// `confab://space/<ID>` links to open (what the desktop passes when a link is clicked).
    pub links: Vec<String>,
}

impl Args {
    /// Parses the arguments a second instance forwarded (its `argv`, program name first).
    /// Anything unparsable yields no links: the running instance only needs those.
    pub fn forwarded_links(argv: &[String]) -> Vec<SpaceId> {
        Args::try_parse_from(argv)
            .map(|a| a.space_links())
            .unwrap_or_default()
    }

    /// The spaces named by well-formed links; other arguments are ignored.
    pub fn space_links(&self) -> Vec<SpaceId> {
        self.links.iter().filter_map(|l| space_link(l)).collect()
    }
}

/// The space of a `confab://space/<ID>` link (a trailing `/` is allowed), or `None`.
pub fn space_link(link: &str) -> Option<SpaceId> {
    let rest = link.strip_prefix("confab://space/")?;
    rest.strip_suffix('/').unwrap_or(rest).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_links_are_parsed_and_junk_is_not() {
        let id: SpaceId = "abcdef234567".parse().unwrap();
        assert_eq!(space_link("confab://space/abcdef234567"), Some(id.clone()));
        assert_eq!(space_link("confab://space/abcdef234567/"), Some(id));
        for bad in [
            "",
            "confab://space/",
            "confab://space/ABCDEF234567",
            "confab://space/abcdef234567/x",
            "confab://spaces/abcdef234567",
            "https://space/abcdef234567",
            "confab://space/../../etc",
        ] {
            assert_eq!(space_link(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn forwarded_arguments_yield_their_links() {
        let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let id: SpaceId = "abcdef234567".parse().unwrap();
        assert_eq!(
            Args::forwarded_links(&argv(&["confab", "confab://space/abcdef234567"])),
            vec![id.clone()]
        );
        assert_eq!(
            Args::forwarded_links(&argv(&[
                "confab",
                "--profile",
                "b",
                "confab://space/abcdef234567"
            ])),
            vec![id]
        );
        assert!(Args::forwarded_links(&argv(&["confab", "--bogus"])).is_empty());
        assert!(Args::forwarded_links(&argv(&["confab"])).is_empty());
    }
}
