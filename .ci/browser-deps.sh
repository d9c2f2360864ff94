#!/bin/sh
# Headless Chromium and its WebDriver, from Debian, for the web-page test (tests/serve/test_page.py).
# Idempotent and quiet: nothing happens when both are installed; apt's output is shown only if it fails.
# A machine where they cannot be installed still runs the other tests; the page test then fails and says why.
set -u
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    echo "browser-deps: chromium and chromium-driver are missing and this user cannot install them (needs root);" \
         "tests/serve/test_page.py will fail." >&2
    exit 0
fi
log=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
# Try the package lists already here first: an offline machine with a warm apt cache needs no update.
if ! $as_root apt-get install -y -qq chromium chromium-driver >"$log" 2>&1; then
    if ! { $as_root apt-get update -qq && $as_root apt-get install -y -qq chromium chromium-driver; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "browser-deps: apt-get could not install chromium and chromium-driver; tests/serve/test_page.py will fail." >&2
    fi
fi
rm -f "$log"
exit 0
