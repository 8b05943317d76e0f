#!/usr/bin/env bash
# Runs the thread and multi-process tests under ThreadSanitizer and AddressSanitizer.
#
#   scripts/sanitizers.sh            # both sanitizers
#   scripts/sanitizers.sh thread     # one of them: thread | address
#
# What runs, under each sanitizer: the library's unit tests (`-p shmstore --lib`, which include the
# lock and commit unit tests), tests/threads.rs, tests/multiprocess.rs, tests/commit.rs and
# tests/write_guards.rs (the rooms write guards keep their state and copies in). The
# multi-process tests re-execute the (instrumented) test binary as child processes, so every child
# is checked too. Each sanitizer builds into its own target directory (target/san-NAME), with the
# nightly toolchain and without -Zbuild-std:
#
# - The standard library is the prebuilt, uninstrumented one. `-Cunsafe-allow-abi-mismatch=sanitizer`
#   lets the instrumented crates link against it. For AddressSanitizer this only means std's own
#   memory accesses are unchecked. For ThreadSanitizer it means that synchronisation inside
#   std::sync (Mutex, Condvar, channels, Arc's fences) is invisible, which produces false race
#   reports on data those primitives order: scripts/tsan.supp suppresses exactly those, each with
#   its reason. shmstore's own atomics, fences and slot copies are instrumented and never
#   suppressed.
# - ThreadSanitizer tracks one process: it checks races between the threads of each process, not
#   between processes sharing the mapping (the loom model, tests/loom.rs, covers the protocol those
#   processes follow).
# - `--target` is explicit so that build scripts and proc macros (the derive) are built without the
#   sanitizer.
#
# A report fails the run: ThreadSanitizer exits 66 from a process that reported, AddressSanitizer
# aborts. Test failures that are not sanitizer reports are shown as they are (for example a
# throughput floor that a 5-20x slower instrumented build cannot meet).
set -uo pipefail
cd "$(dirname "$0")/.."

sanitizers=("${@:-thread address}")
# shellcheck disable=SC2206
sanitizers=(${sanitizers[*]})
target="$(rustc -vV | sed -n 's/^host: //p')"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "!!!!!!!! SKIPPED: no nightly toolchain: the sanitizer runs did not happen !!!!!!!!"
  exit 0
fi

status=0
for san in "${sanitizers[@]}"; do
  case "$san" in
    thread)
      export TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp halt_on_error=0 print_suppressions=1 second_deadlock_stack=1"
      # At opt-level 0, `AtomicU64::load` and friends are calls into the uninstrumented std, so
      # TSan sees no atomic access at all (it then misses races against atomics, such as a plain
      # copy of an atomic another thread is updating). From opt-level 1 they are inlined into the
      # instrumented crates. Debug assertions stay on.
      export CARGO_PROFILE_DEV_OPT_LEVEL=1
      ;;
    address)
      # Children killed with SIGKILL by the crash tests never report; everything else is checked,
      # leaks included.
      export ASAN_OPTIONS="detect_leaks=1 halt_on_error=1"
      ;;
    *)
      echo "unknown sanitizer $san (thread or address)"
      exit 2
      ;;
  esac
  export RUSTFLAGS="-Zsanitizer=$san -Cunsafe-allow-abi-mismatch=sanitizer"
  export RUSTDOCFLAGS="$RUSTFLAGS"
  export CARGO_TARGET_DIR="target/san-$san"
  echo "== $san sanitizer: shmstore unit tests"
  cargo +nightly test --target "$target" -p shmstore --lib || status=1
  echo "== $san sanitizer: tests/threads.rs, tests/multiprocess.rs, tests/commit.rs, tests/write_guards.rs"
  cargo +nightly test --target "$target" --no-fail-fast --test threads --test multiprocess --test commit --test write_guards || status=1
done
exit $status
