"""Binder links from git remotes: providers, encoding, hosts, badges (pure; RELIABILITY A8, K3)."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jupyter_envpack.errors import InputError
from jupyter_envpack.share.links import (
    GitRemote,
    binder_badges,
    binder_url,
    normalize_host,
    parse_remote,
)

# Text that leans on the characters URLs care about, plus anything else Unicode has.
URLISH = st.text(alphabet=st.characters() | st.sampled_from("@:/?#%&=+;~. \\"))
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("url", "provider", "spec", "clean"),
    [
        (
            "https://github.com/jupyter/envpack.git",
            "gh",
            "jupyter/envpack",
            "https://github.com/jupyter/envpack",
        ),
        (
            "https://github.com/jupyter/envpack",
            "gh",
            "jupyter/envpack",
            "https://github.com/jupyter/envpack",
        ),
        (
            "git@github.com:jupyter/envpack.git",
            "gh",
            "jupyter/envpack",
            "https://github.com/jupyter/envpack",
        ),
        (
            "ssh://git@github.com/jupyter/envpack.git",
            "gh",
            "jupyter/envpack",
            "https://github.com/jupyter/envpack",
        ),
        (
            "https://x-access-token:ghp_SECRET@github.com/Org-1/repo.name",
            "gh",
            "Org-1/repo.name",
            "https://github.com/Org-1/repo.name",
        ),
        (
            "https://gitlab.com/group/sub/project.git",
            "gl",
            "group%2Fsub%2Fproject",
            "https://gitlab.com/group/sub/project",
        ),
        (
            "git@gitlab.com:group/project.git",
            "gl",
            "group%2Fproject",
            "https://gitlab.com/group/project",
        ),
        (
            "https://gist.github.com/octocat/0123abcd.git",
            "gist",
            "octocat/0123abcd",
            "https://gist.github.com/octocat/0123abcd",
        ),
        (
            "git@gist.github.com:0123abcd.git",
            "git",
            "https%3A%2F%2Fgist.github.com%2F0123abcd.git",
            "https://gist.github.com/0123abcd.git",
        ),
        (
            "https://codeberg.org/someone/thing.git",
            "git",
            "https%3A%2F%2Fcodeberg.org%2Fsomeone%2Fthing.git",
            "https://codeberg.org/someone/thing.git",
        ),
        (
            "https://user:pw@git.example.org/a/b",
            "git",
            "https%3A%2F%2Fgit.example.org%2Fa%2Fb",
            "https://git.example.org/a/b",
        ),
    ],
)
def test_parse_remote_maps_each_forge_to_its_binder_provider(url, provider, spec, clean):
    remote = parse_remote(url)
    assert (remote.provider, remote.spec, remote.url) == (provider, spec, clean)
    assert "SECRET" not in repr(remote) and "pw" not in remote.url


@pytest.mark.parametrize(
    "url",
    [
        "/srv/git/repo.git",
        "../other",
        "file:///srv/git/repo.git",
        "C:\\repos\\x",
        "http://git.example.org/a/b",
        "git@git.example.org:a/b.git",
        "ssh://git.example.org/a/b",
        "https://github.com/only-owner",
        "https://github.com/a/b/c",
        "https://github.com/a b/c",
        "https://github.com/a/b?x=1",
        "javascript:alert(1)",
        "https://github.com/a/b\nx",
        "",
        "https://:80/a/b",
        "https://gist.github.com/a/b/c",
    ],
)
def test_parse_remote_refuses_what_binder_cannot_clone(url):
    with pytest.raises(InputError) as err:
        parse_remote(url)
    assert err.value.hint


@pytest.mark.parametrize(
    ("url", "private"),
    [
        ("https://github.com/a/b", False),
        ("git@github.com:a/b.git", False),
        ("https://token@github.com/a/b", True),
        ("https://git.corp/a/b", True),
        ("https://gitserver/a/b", True),
        ("https://10.1.2.3/a/b", True),
        ("https://git.example.org/a/b", False),
        ("https://gitlab.internal/a/b", True),
    ],
)
def test_private_looking_remotes(url, private):
    assert parse_remote(url).private_looking is private


def test_binder_url_is_the_documented_literal():
    remote = parse_remote("git@github.com:jupyter/envpack.git")
    assert binder_url(remote, SHA, "examples/demo.ipynb") == (
        f"https://mybinder.org/v2/gh/jupyter/envpack/{SHA}?urlpath=lab/tree/examples/demo.ipynb"
    )
    gl = parse_remote("https://gitlab.com/g/s/p.git")
    assert binder_url(gl, "feature/x y", "a b/#1?.ipynb", "https://binder.example.org/hub/") == (
        "https://binder.example.org/hub/v2/gl/g%2Fs%2Fp/feature%2Fx%20y"
        "?urlpath=lab/tree/a%2520b/%25231%253F.ipynb"
    )


@pytest.mark.reliability("A8")
@pytest.mark.parametrize(
    "host",
    [
        "javascript:alert(1)",
        "data:text/html,x",
        "//evil.example",
        "http://mybinder.org",
        "https://user:pass@mybinder.org",
        "https://mybinder.org/?q=1",
        "https://mybinder.org/#x",
        "ftp://mybinder.org",
        "https://",
        "https://bad host",
        "https://a\nb",
    ],
)
def test_bad_hosts_are_refused(host):
    with pytest.raises(InputError):
        normalize_host(host)


def test_hosts_are_normalised():
    assert normalize_host(None) == "https://mybinder.org"
    assert normalize_host("https://mybinder.org/") == "https://mybinder.org"
    assert normalize_host("http://127.0.0.1:8585/") == "http://127.0.0.1:8585"


@pytest.mark.parametrize(
    ("ref", "path"),
    [
        ("", "a.ipynb"),
        ("main", "../a.ipynb"),
        ("main", "/abs.ipynb"),
        ("main", "a//b.ipynb"),
        ("main", "a/./b.ipynb"),
        ("bad\nref", "a.ipynb"),
        (" main", "a.ipynb"),
        ("main", "a\0.ipynb"),
    ],
)
def test_odd_refs_and_paths_are_refused(ref, path):
    with pytest.raises(InputError):
        binder_url(parse_remote("https://github.com/a/b"), ref, path)


def test_badges_embed_the_link_in_markdown_and_rst():
    link = binder_url(parse_remote("https://github.com/a/b"), "main", "n b.ipynb")
    badges = binder_badges(link)
    assert badges["markdown"] == f"[![Binder](https://mybinder.org/badge_logo.svg)]({link})"
    assert badges["rst"] == (
        f".. image:: https://mybinder.org/badge_logo.svg\n   :target: {link}\n   :alt: Binder"
    )
    assert not set(" ()<>`") & set(link)


def decode_link(link: str, provider: str) -> tuple[str, str, str]:
    """Undo binder_url the way BinderHub does: (repository part, ref, notebook path)."""
    parts = urlsplit(link)
    segments = parts.path.split("/")
    assert segments[:3] == ["", "v2", provider]
    repo, ref = "/".join(segments[3:-1]), unquote(segments[-1])
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
    assert list(query) == ["urlpath"] and len(query["urlpath"]) == 1
    urlpath = query["urlpath"][0]
    assert urlpath.startswith("lab/tree/")
    path = "/".join(unquote(s) for s in urlpath[len("lab/tree/") :].split("/"))
    return repo, ref, path


def assert_safe(link: str, host: str = "mybinder.org") -> None:
    parts = urlsplit(link)
    assert parts.scheme == "https" and parts.netloc == host
    assert parts.username is None and parts.password is None and not parts.fragment
    assert link.isascii() and link.isprintable() and " " not in link


@pytest.mark.reliability("A8")
@pytest.mark.reliability("K3")
@settings(max_examples=300, deadline=None)
@given(ref=URLISH, path=URLISH)
def test_any_ref_and_path_round_trip_or_are_refused(ref, path):
    remote = parse_remote("https://github.com/jupyter/envpack")
    try:
        link = binder_url(remote, ref, path)
    except InputError:
        return
    assert_safe(link)
    assert decode_link(link, "gh") == ("jupyter/envpack", ref, path)
    assert binder_url(remote, ref, path) == link  # deterministic


@pytest.mark.reliability("A8")
@settings(max_examples=300, deadline=None)
@given(
    owner=URLISH,
    repo=URLISH,
    host=st.sampled_from(["github.com", "git.example.org"]),
    user=st.from_regex(r"[a-f0-9]{16,24}", fullmatch=True),
    password=st.from_regex(r"[A-Z]{16,24}", fullmatch=True),
)
def test_any_remote_gives_a_clean_link_or_is_refused(owner, repo, host, user, password):
    assume(user not in owner + repo and password not in owner + repo)
    try:
        remote = parse_remote(f"https://{user}:{password}@{host}/{owner}/{repo}")
    except InputError:
        return
    link = binder_url(remote, "main", "nb.ipynb")
    assert_safe(link)
    assert user not in link and password not in link and "@" not in unquote(link)
    assert remote.private_looking
    assert isinstance(remote, GitRemote) and remote.provider in {"gh", "git"}
    if remote.provider == "git":
        assert unquote(decode_link(link, "git")[0]) == remote.url


@pytest.mark.reliability("A8")
@settings(max_examples=400, deadline=None)
@given(
    url=URLISH
    | st.builds(
        "{}://{}@{}/{}".format,
        st.sampled_from(["https", "http", "ssh", "git", "file"]),
        URLISH,
        st.sampled_from(["github.com", "gitlab.com", "gist.github.com", "h.example.org"]),
        URLISH,
    )
)
def test_any_remote_url_is_refused_or_becomes_a_clean_https_clone_url(url):
    try:
        remote = parse_remote(url)
    except InputError as exc:
        assert exc.hint
        return
    parts = urlsplit(remote.url)
    assert parts.scheme == "https" and parts.hostname == remote.host
    assert parts.username is None and parts.password is None
    assert not parts.query and not parts.fragment and remote.url.isprintable()
    assert_safe(binder_url(remote, "main", "a.ipynb"))
