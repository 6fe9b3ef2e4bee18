#!/bin/sh
# carvq conformance kit: runs every case of this kit under one WASI engine and checks its exit
# code and the sha256 of its stdout against what the reference decoder computed.
#
#   sh run.sh [--only PATTERN] [--list] ENGINE [WORDS...]
#
#   sh run.sh wasmtime run --dir=.
#   sh run.sh iwasm --heap-size=0 --dir=.
#   sh run.sh wasm3
#   sh run.sh node host/run-wasi.mjs
#
# Each case runs, from this folder: ENGINE WORDS... MODULE ARGS... (blob paths are relative to it).
# POSIX sh only (busybox ash will do); needs the engine and one of sha256sum, shasum or openssl.
# Exit status: 0 when every case passes, 1 when one fails, 2 on a usage error.

usage() {
  # printf and echo only: the kit needs no utility beyond the engine and a sha256 tool.
  printf '%s\n' \
    "usage: sh run.sh [--only PATTERN] [--list] ENGINE [WORDS...]" \
    "" \
    "Runs, from the kit's folder, ENGINE WORDS... MODULE ARGS... for every case in cases.txt and" \
    "prints PASS name or FAIL name: why, then \"N passed, M failed\". Exits 0 only when all pass." \
    "" \
    "  --only PATTERN   only the cases whose name contains PATTERN (shell wildcards * ? [...] allowed)" \
    "  --list           print the cases (name: module, arguments, expected exit) without running them" \
    "  -h, --help       this text" \
    "" \
    "examples:" \
    "  sh run.sh wasmtime run --dir=." \
    "  sh run.sh iwasm --heap-size=0 --dir=." \
    "  sh run.sh wasm3" \
    "  sh run.sh node host/run-wasi.mjs"
}

set -f  # case arguments are plain words: never expand them as file patterns

only=""
list=0
while [ $# -gt 0 ]; do
  case $1 in
    --only)
      if [ $# -lt 2 ]; then echo "run.sh: --only needs a PATTERN" >&2; exit 2; fi
      only=$2
      shift 2
      ;;
    --only=*) only=${1#--only=}; shift ;;
    --list) list=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "run.sh: unknown option $1 (see sh run.sh --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done

if [ "$list" = 0 ] && [ $# -eq 0 ]; then
  usage >&2
  exit 2
fi

# Engine words that name files relative to the caller's folder (e.g. kit/host/run-wasi.mjs when
# run as sh kit/run.sh ...) still name them after the cd below.
here=$PWD
count=$#
for word do
  case $word in
    /*) ;;
    */*) if [ -e "$word" ]; then word=$here/$word; fi ;;
  esac
  set -- "$@" "$word"
done
shift "$count"

case $0 in
  */*) cd "${0%/*}" || exit 2 ;;
esac
if [ ! -f cases.txt ]; then
  echo "run.sh: cases.txt not found in $PWD: run run.sh from a complete kit" >&2
  exit 2
fi

if [ "$list" = 1 ]; then
  while read -r name want_exit want_sha rest; do
    case $name in ''|'#'*) continue ;; esac
    case $name in *$only*) ;; *) continue ;; esac
    echo "$name: $rest (exit $want_exit)"
  done < cases.txt
  exit 0
fi

if ! command -v "$1" >/dev/null 2>&1; then
  echo "run.sh: engine '$1' not found (give its path, or put it on PATH)" >&2
  exit 2
fi

if command -v sha256sum >/dev/null 2>&1; then hasher=sha256sum
elif command -v shasum >/dev/null 2>&1; then hasher=shasum
elif command -v openssl >/dev/null 2>&1; then hasher=openssl
else
  echo "run.sh: need one of sha256sum, shasum or openssl to check the rows" >&2
  exit 2
fi

# Prints the sha256 (hex) of file $1.
hash_of() {
  case $hasher in
    sha256sum) h=$(sha256sum < "$1") ;;
    shasum) h=$(shasum -a 256 < "$1") ;;
    openssl) h=$(openssl dgst -sha256 < "$1"); h=${h##* } ;;
  esac
  echo "${h%% *}"
}

# Two scratch files (no mkdir, no mktemp: not every device has them); removed at the end when
# rm exists, else left empty.
scratch=${TMPDIR:-/tmp}/carvq-kit.$$
out=$scratch.out
err=$scratch.err
cleanup() {
  : > "$out"
  : > "$err"
  if command -v rm >/dev/null 2>&1; then rm -f "$out" "$err"; fi
}
if ! : > "$out" || ! : > "$err"; then
  echo "run.sh: cannot write scratch files in ${TMPDIR:-/tmp} (set TMPDIR to a writable folder)" >&2
  exit 2
fi
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

passed=0
failed=0
while read -r name want_exit want_sha rest; do
  case $name in ''|'#'*) continue ;; esac
  case $name in *$only*) ;; *) continue ;; esac
  # $rest (module and arguments) is split on blanks on purpose: the kit's words hold none.
  "$@" $rest > "$out" 2> "$err" < /dev/null
  got=$?
  why=""
  if [ "$got" != "$want_exit" ]; then
    why="expected exit $want_exit, got $got"
  else
    got_sha=$(hash_of "$out")
    if [ "$got_sha" != "$want_sha" ]; then
      why="rows differ (sha256 $got_sha, expected $want_sha)"
    fi
  fi
  if [ -z "$why" ]; then
    echo "PASS $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name: $why"
    first=""
    IFS= read -r first < "$err"
    if [ -n "$first" ]; then echo "  stderr: $first"; fi
    failed=$((failed + 1))
  fi
done < cases.txt

if [ $((passed + failed)) -eq 0 ]; then
  echo "run.sh: no case matches '$only' (see sh run.sh --list)" >&2
  exit 2
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
