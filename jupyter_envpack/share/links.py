"""Pure Binder link builders: git remote URL → BinderHub provider spec → launch link and badges.

Nothing here touches the filesystem or the network. Every component that goes into a link is
validated or percent-encoded, userinfo (``user:token@``) never survives, and the link's scheme is
``https`` (plain ``http`` only for a BinderHub on the loopback interface, for local testing), see
RELIABILITY.md rows A8 and K3.

The provider specs follow BinderHub's repo providers:

============  =================================================  ============================
provider      remote                                             spec in ``/v2/<provider>/``
============  =================================================  ============================
``gh``        ``github.com/<org>/<repo>``                        ``<org>/<repo>/<ref>``
``gl``        ``gitlab.com/<group>/.../<project>``               ``<quoted path>/<ref>``
``gist``      ``gist.github.com/<user>/<id>``                    ``<user>/<id>/<ref>``
``git``       any other ``https://`` remote                      ``<quoted url>/<ref>``
============  =================================================  ============================
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import InputError

DEFAULT_HOST = "https://mybinder.org"

# Public forges Binder can clone from anonymously; anything else may need credentials.
PUBLIC_HOSTS = frozenset(
    {
        "github.com",
        "gitlab.com",
        "gist.github.com",
        "bitbucket.org",
        "codeberg.org",
        "git.sr.ht",
        "huggingface.co",
    }
)
_PRIVATE_SUFFIXES = (".local", ".lan", ".internal", ".intranet", ".corp", ".home", ".localdomain")

_GITHUB_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_REPO_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_GITLAB_PART = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}")
_GIT_PATH_PART = re.compile(r"[A-Za-z0-9._~+-]{1,255}")
_GIST_ID = re.compile(r"[0-9a-f]{1,64}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})")
_SCP_LIKE = re.compile(r"(?:(?P<user>[^@/:\s]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>(?!/).*)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # controls and lone surrogates (not UTF-8)


@dataclass(frozen=True)
class GitRemote:
    """A git remote as Binder sees it.

    Parameters
    ----------
    provider
        BinderHub provider prefix: ``gh``, ``gl``, ``gist`` or ``git``.
    spec
        The provider's repository part of the link, already percent-encoded (without the ref).
    url
        The remote as an ``https://`` clone URL with any userinfo removed (safe to show).
    host
        Lower-cased host name of the remote.
    private_looking
        True when the remote carried credentials or its host is not a public forge.
    """

    provider: str
    spec: str
    url: str
    host: str
    private_looking: bool = False


def _fail(message: str, hint: str | None = None) -> InputError:
    return InputError(
        message,
        hint=hint
        or "Binder needs an https remote on a public git host "
        "(e.g. `git remote add origin https://github.com/ORG/REPO`)",
    )


def _looks_private(host: str, had_userinfo: bool) -> bool:
    if had_userinfo:
        return True
    if host in PUBLIC_HOSTS:
        return False
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host or host.endswith(_PRIVATE_SUFFIXES)
    return addr.is_private or addr.is_loopback or addr.is_link_local


def _split_remote(url: str) -> tuple[str, str, str, bool]:
    """Return ``(scheme, host, path, had_userinfo)``; scp-like ``git@host:path`` becomes ssh."""
    if _CONTROL.search(url) or " " in url.strip():
        raise _fail("the git remote URL contains spaces or control characters")
    url = url.strip()
    if "://" not in url:
        m = _SCP_LIKE.fullmatch(url)
        if not m:
            raise _fail("the git remote is a local path, not a URL Binder could clone")
        return "ssh", m["host"].lower(), "/" + m["path"], False  # `git@` is no credential
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        # Over http(s) a user name is usually a token; over ssh `git@` is the norm.
        had_userinfo = parts.password is not None or (
            parts.username is not None and parts.scheme.lower() in {"http", "https"}
        )
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise _fail("the git remote URL is malformed") from exc
    if parts.query or parts.fragment:
        raise _fail("the git remote URL has a query or fragment")
    if not host or not _HOSTNAME.fullmatch(host):
        raise _fail("the git remote URL has no valid host name")
    return parts.scheme.lower(), host, parts.path, had_userinfo


def _path_parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    if parts and parts[-1].endswith(".git"):
        parts[-1] = parts[-1][:-4]
    if not parts or any(p in {".", ".."} for p in parts):
        raise _fail("the git remote URL has no repository path")
    return parts


def parse_remote(url: str) -> GitRemote:
    """Turn a git remote URL (https, ssh or scp-like) into the :class:`GitRemote` Binder would use.

    Parameters
    ----------
    url
        What ``git remote get-url`` prints. May carry credentials; they are dropped.

    Raises
    ------
    InputError
        The remote cannot be expressed as a Binder link (local path, ``file:``, ``http:`` to a
        non-forge host, malformed URL, ...).
    """
    scheme, host, path, had_userinfo = _split_remote(url)
    if scheme not in {"https", "http", "ssh", "git", "git+ssh", "ssh+git"}:
        raise _fail(f"Binder cannot clone a `{scheme}:` remote")
    parts = _path_parts(path)
    private = _looks_private(host, had_userinfo)
    if host == "github.com":
        if (
            len(parts) != 2
            or not _GITHUB_OWNER.fullmatch(parts[0])
            or not _REPO_NAME.fullmatch(parts[1])
        ):
            raise _fail("the GitHub remote is not of the form github.com/OWNER/REPO")
        return GitRemote(
            "gh",
            f"{parts[0]}/{parts[1]}",
            f"https://github.com/{parts[0]}/{parts[1]}",
            host,
            private,
        )
    if host == "gist.github.com":
        return _gist_remote(parts, private)
    if host == "gitlab.com":
        if len(parts) < 2 or not all(_GITLAB_PART.fullmatch(p) for p in parts):
            raise _fail("the GitLab remote is not of the form gitlab.com/GROUP/PROJECT")
        joined = "/".join(parts)
        return GitRemote(
            "gl", quote(joined, safe=""), f"https://gitlab.com/{joined}", host, private
        )
    if scheme != "https":
        raise _fail(
            f"Binder clones `{host}` over https only, but this remote uses `{scheme}`",
            "add an https remote for the same repository (Binder clones anonymously)",
        )
    if not all(_GIT_PATH_PART.fullmatch(p) for p in parts):
        raise _fail("the git remote's path has characters a clone URL should not have")
    clean = urlunsplit(("https", host, "/" + "/".join(parts), "", ""))
    if path.endswith(".git"):
        clean += ".git"
    return GitRemote("git", quote(clean, safe=""), clean, host, private)


def _gist_remote(parts: list[str], private: bool) -> GitRemote:
    if len(parts) == 2 and _GITHUB_OWNER.fullmatch(parts[0]) and _GIST_ID.fullmatch(parts[1]):
        return GitRemote(
            "gist",
            f"{parts[0]}/{parts[1]}",
            f"https://gist.github.com/{parts[0]}/{parts[1]}",
            "gist.github.com",
            private,
        )
    if len(parts) == 1 and _GIST_ID.fullmatch(parts[0]):
        # A gist cloned by id only does not name its owner: launch it as a plain git repo.
        clean = f"https://gist.github.com/{parts[0]}.git"
        return GitRemote("git", quote(clean, safe=""), clean, "gist.github.com", private)
    raise _fail("the gist remote is not of the form gist.github.com/USER/ID")


def normalize_host(host: str | None) -> str:
    """Validate a BinderHub base URL and return it without a trailing slash.

    Only ``https`` is accepted, or ``http`` to a loopback address (a local BinderHub). Userinfo,
    queries and fragments are refused.

    Raises
    ------
    InputError
        The host is not an acceptable BinderHub URL.
    """
    host = (host or DEFAULT_HOST).strip()
    hint = "pass the BinderHub's https base URL, e.g. https://mybinder.org"
    if _CONTROL.search(host) or " " in host:
        raise InputError("the Binder host contains spaces or control characters", hint=hint)
    try:
        parts = urlsplit(host)
        name = parts.hostname or ""
        bad_userinfo = parts.username is not None or parts.password is not None
        _ = parts.port
    except ValueError as exc:
        raise InputError(f"the Binder host {host!r} is not a URL", hint=hint) from exc
    loopback = name in {"localhost", "127.0.0.1", "::1"}
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise InputError(f"the Binder host must be an https URL, got {host!r}", hint=hint)
    valid_name = loopback or bool(_HOSTNAME.fullmatch(name))
    if not valid_name or bad_userinfo or parts.query or parts.fragment:
        raise InputError(f"the Binder host {host!r} is not a plain base URL", hint=hint)
    path = quote(parts.path.rstrip("/"), safe="/-._~")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _check_ref(ref: str) -> str:
    if not ref or _CONTROL.search(ref) or ref.strip() != ref:
        raise InputError(
            f"the git ref {ref!r} cannot go into a Binder link",
            hint="use a commit SHA, branch or tag name",
        )
    return ref


def _check_notebook_path(path: str) -> list[str]:
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or any(p in {"", ".", ".."} for p in parts)
        or _CONTROL.search(path)
    ):
        raise InputError(
            f"the notebook path {path!r} is not a plain path inside the repository",
            hint="give the notebook's path relative to the repository root",
        )
    return parts


def lab_urlpath(notebook_path: str) -> str:
    """Return the ``urlpath`` value that opens ``notebook_path`` in JupyterLab (path-encoded)."""
    return "lab/tree/" + "/".join(quote(p, safe="") for p in _check_notebook_path(notebook_path))


def binder_url(
    remote: GitRemote, ref: str, notebook_path: str | None = None, host: str | None = None
) -> str:
    """Build the Binder launch link (pure and deterministic).

    Parameters
    ----------
    remote
        The repository, from :func:`parse_remote`.
    ref
        Commit SHA, branch or tag Binder should build.
    notebook_path
        Path of the notebook relative to the repository root; the link opens it in JupyterLab.
    host
        BinderHub base URL (default https://mybinder.org).

    Returns
    -------
    str
        ``<host>/v2/<provider>/<spec>/<ref>?urlpath=lab/tree/<path>``, every component
        percent-encoded so that ``#``, ``?``, ``&``, spaces and non-ASCII survive exactly once.
    """
    link = f"{normalize_host(host)}/v2/{remote.provider}/{remote.spec}/"
    link += quote(_check_ref(ref), safe="")
    if notebook_path is not None:
        link += "?urlpath=" + quote(lab_urlpath(notebook_path), safe="/")
    return link


def binder_badges(link: str, host: str | None = None) -> dict[str, str]:
    """Return the Markdown and reStructuredText "launch binder" badges for ``link``."""
    image = f"{normalize_host(host)}/badge_logo.svg"
    return {
        "markdown": f"[![Binder]({image})]({link})",
        "rst": f".. image:: {image}\n   :target: {link}\n   :alt: Binder",
    }
