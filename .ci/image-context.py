"""CI's check of the container image, without a container daemon.

Assembles exactly the build context the Dockerfile's COPY lines and
.dockerignore give, into a temporary directory, and runs the build stage's
RUN lines there as `docker build` would, with Cargo `--offline` (the
registry already downloaded) and, by default, `cargo check` for `cargo build
--release` (the same manifests, build scripts, proc macros and sources are
read; only code generation and linking are skipped). `--release` runs the
stages exactly as written.

The target directory of the stages is kept between runs (in
target/image-context/ by default, $TESSERA_IMAGE_TARGET to change it), so a
second run recompiles only the workspace's own crates.

Only the instructions the build stage uses are understood (FROM, WORKDIR,
COPY, RUN, ENV); any other one stops the check, so that a change to the
Dockerfile cannot silently escape it.
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ignore_rules(path):
    """The .dockerignore patterns as (regex, excluded) pairs, in order."""
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excluded = not line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        pattern = os.path.normpath(pattern)
        rules.append((re.compile(glob_regex(pattern)), excluded))
    return rules


def glob_regex(pattern):
    """Docker's patternmatcher: `**` any number of directories, `*` and `?`
    within one path segment."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return "^" + out + "$"


def ignored(relative, rules):
    """Whether the context leaves `relative` out: the last pattern matching
    the path or one of its parent directories decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for regex, excluded in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            verdict = excluded
    return verdict


def context_files(rules):
    """Every file of the worktree the build context holds (git's view of
    the worktree, untracked files included, so the check sees what a
    `docker build .` here would)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    return sorted(f for f in listed if f and (ROOT / f).is_file() and not ignored(f, rules))


def instructions(dockerfile):
    """The Dockerfile as (keyword, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        yield keyword.upper(), rest.strip()


def copy(args, files, context, root, workdir):
    """`COPY SRC... DEST` from the build context, as Docker does it: a
    directory's contents go under DEST, a file into DEST when it ends in `/`."""
    parts = shlex.split(args)
    if any(p.startswith("--") for p in parts):
        raise SystemExit(f"image-context: COPY {args}: options are not understood here")
    *sources, dest = parts
    target = (root / workdir.lstrip("/")) / dest if not dest.startswith("/") else root / dest.lstrip("/")
    for source in sources:
        source = os.path.normpath(source)
        matched = [f for f in files if f == source or f.startswith(source + "/")]
        if not matched:
            raise SystemExit(
                f"image-context: COPY {source}: not in the build context "
                "(missing, or left out by .dockerignore)"
            )
        for f in matched:
            if f == source:
                out = target / Path(f).name if dest.endswith("/") or len(sources) > 1 else target
            else:
                out = target / os.path.relpath(f, source)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(context / f, out)


def run(command, root, workdir, release, env):
    """A RUN line in the stage's working directory; `cargo build --release`
    becomes `cargo check` unless --release, and gains `--offline`."""
    if not release:
        command = command.replace("cargo build --release", "cargo check")
        command = command.replace("target/release", "target/debug")
    command = command.replace("cargo build", "cargo build --offline")
    command = command.replace("cargo check", "cargo check --offline")
    print(f"image-context: RUN {command}", flush=True)
    subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=root / workdir.lstrip("/"),
                   env=env, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", action="store_true",
                        help="run the RUN lines as written (a release build: slow)")
    parser.add_argument("--keep", action="store_true", help="keep the assembled context")
    opts = parser.parse_args()

    rules = ignore_rules(ROOT / ".dockerignore")
    files = context_files(rules)
    temp = Path(tempfile.mkdtemp(prefix="tessera-image-"))
    context, root = temp / "context", temp / "root"
    for f in files:
        (context / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, context / f)
    print(f"image-context: {len(files)} files in the build context ({temp})", flush=True)

    cache = Path(os.environ.get("TESSERA_IMAGE_TARGET", ROOT / "target" / "image-context"))
    cache.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("CARGO_TARGET_DIR", None)
    started, stage, workdir = time.monotonic(), None, "/"
    try:
        for keyword, args in instructions(ROOT / "Dockerfile"):
            if keyword == "FROM":
                stage = args.split()[-1] if " AS " in args.upper() else None
                if stage == "build":
                    root.mkdir()
                continue
            if stage != "build":
                continue
            if keyword == "WORKDIR":
                workdir = args
                (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
                # The stage's target/ is the kept one, so its RUN lines'
                # `rm -rf target/...` act on it as they would in the image.
                link = root / workdir.lstrip("/") / "target"
                if not link.exists():
                    link.symlink_to(cache)
            elif keyword == "COPY":
                copy(args, files, context, root, workdir)
            elif keyword == "RUN":
                run(args, root, workdir, opts.release, env)
            elif keyword == "ENV":
                key, _, value = args.partition("=")
                env[key.strip()] = value.strip()
            else:
                raise SystemExit(f"image-context: {keyword} in the build stage is not understood here")
        if root.exists() is False:
            raise SystemExit("image-context: the Dockerfile has no stage named `build`")
    finally:
        if opts.keep:
            print(f"image-context: kept {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)
    print(f"image-context: the image's build stage builds from its context "
          f"({'release' if opts.release else 'cargo check'}, {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as err:
        print(f"image-context: a RUN line failed (exit {err.returncode})", file=sys.stderr)
        sys.exit(1)
