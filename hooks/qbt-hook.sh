#!/bin/sh
# qBittorrent "Run external program" hook for qbhook.
#
#   /hooks/qbt-hook.sh added    "%I" "%J" "%K" "%N" "%L" "%G" "%F" "%R" "%D" "%C" "%Z"
#   /hooks/qbt-hook.sh finished "%I" "%J" "%K" "%N" "%L" "%G" "%F" "%R" "%D" "%C" "%Z"
#
# qBittorrent starts this without a shell and passes each placeholder as its own argument.
# Names may hold spaces, quotes, $, backslashes, newlines or start with "-": values are
# only ever expanded inside double quotes, never passed where an option could be parsed,
# and are percent-encoded byte by byte before they reach curl or wget (a value that is not
# UTF-8 goes as NAME.hex, see form_body: it arrives byte-exact instead of costing the event).
#
# Settings (environment, or KEY=VALUE lines in $QBHOOK_HOOK_CONF, default: qbt-hook.conf
# next to this script; the environment wins). A conf that exists but cannot be read, or a
# QBHOOK_HOOK_CONF that names no file, is logged in one line, and the event still goes with
# the environment and defaults (a try costs nothing; a failure then says the conf was not
# read). A conf or token file that anyone but this user or root may write, or that another
# user owns, is refused and nothing is sent: whoever can change it could point QBHOOK_URL
# elsewhere and have the token (or the first line of any file this user reads) sent there.
#   QBHOOK_URL         base URL of qbhook (default http://127.0.0.1:9797)
#   QBHOOK_TOKEN       token sent as X-Qbhook-Token, or
#   QBHOOK_TOKEN_FILE  file holding it (first line)
#   QBHOOK_INSTANCE    name of this qBittorrent, when several feed one qbhook
#   QBHOOK_HOOK_LOG    file that failures are appended to (always also stderr)
#   QBHOOK_HOOK_MODE   "direct": run `qbhook hook ...` (must be on PATH) instead of HTTP;
#                      unset or empty: HTTP; any other value is logged, then HTTP
#
# Always exits 0: qBittorrent ignores the status, and a missed event is caught by the
# sweeper. Failures are logged, never silent. An HTTP call ends within $DEADLINE (4 s),
# whatever the server does.

# qBittorrent may be started with an empty environment.
PATH=${PATH:-/usr/local/bin:/usr/bin:/bin}

log_failure() {
    msg="$(date '+%Y-%m-%dT%H:%M:%S%z' 2>/dev/null) qbt-hook: $*"
    printf '%s\n' "$msg" >&2
    if [ -n "${QBHOOK_HOOK_LOG-}" ]; then
        printf '%s\n' "$msg" >>"$QBHOOK_HOOK_LOG" 2>/dev/null || :
    fi
}

# A config file is read, never sourced: only known keys, values taken literally. Forgiven,
# because editors and shell habits make them: a CR before each newline (Windows), blanks
# around the key and the value, "export " before the key and a "# comment" after the value
# (a file also sourced by a shell), one pair of matching quotes around the value. Any other
# line is logged by its number, not its text (it may hold the token), and skipped.
load_conf() {
    cr=$(printf '\r') n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        trim "${line%"$cr"}"
        line=$trimmed
        case $line in
        export[[:blank:]]*)
            trim "${line#export}"
            line=$trimmed
            ;;
        esac
        case $line in
        '' | '#'*) continue ;;
        *=*) ;;
        *)
            log_failure "$1 line $n: not KEY=VALUE, ignored"
            continue
            ;;
        esac
        trim "${line%%=*}"
        key=$trimmed
        trim "${line#*=}"
        uncomment "$trimmed"
        case $value in
        \"*\" | \'*\')
            value=${value#?}
            value=${value%?}
            ;;
        esac
        case $key in
        QBHOOK_URL | QBHOOK_TOKEN | QBHOOK_TOKEN_FILE | QBHOOK_INSTANCE | QBHOOK_HOOK_LOG | QBHOOK_HOOK_MODE)
            # Environment wins: set only what is still unset.
            eval "[ -n \"\${$key+x}\" ] || $key=\$value"
            ;;
        *) log_failure "$1 line $n: unknown key, ignored" ;;
        esac
    done <"$1"
}

# Sets value to $1 (a trimmed value) without a shell comment after it, as sh would read it:
# blanks then "#" after the closing quote of a quoted value, or anywhere in an unquoted one
# ("#" inside quotes, or with no blank before it, is part of the value: a URL's fragment).
uncomment() {
    value=$1
    case $value in
    \"* | \'*)
        q=${value%"${value#?}"}
        rest=${value#?}
        case $rest in
        *"$q"*) ;;
        *) return 0 ;; # no closing quote: taken literally
        esac
        after=${rest#*"$q"}
        case $after in
        [[:blank:]]*) ;;
        *) return 0 ;;
        esac
        trim "$after"
        case $trimmed in
        '#'*) value=${value%"$after"} ;;
        esac
        ;;
    *[[:blank:]]\#*)
        trim "${value%%[[:blank:]]\#*}"
        value=$trimmed
        ;;
    esac
}

# Sets trimmed to $1 without the spaces and tabs around it.
trim() {
    trimmed=${1#"${1%%[![:blank:]]*}"}
    trimmed=${trimmed%"${trimmed##*[![:blank:]]}"}
}

# Whether only this user (or root) can change file $1: its owner is this user or root, and
# neither group nor others may write it (ls -ln, not stat: stat is not POSIX; -L: the file a
# symlink names). Else returns 1 with the reason in unsafe_why.
owned_safely() {
    unsafe_why=
    ls_out=$(ls -lLdn -- "$1" 2>/dev/null) || {
        unsafe_why="ls -ln cannot show its owner and mode"
        return 1
    }
    read -r mode _ owner _ <<EOF
$ls_out
EOF
    me=$(id -u 2>/dev/null) || me=
    case $mode in
    ?????w* | ????????w*) unsafe_why="group or others may write it ($mode): chmod go-w it" ;;
    *) [ "$owner" = 0 ] || [ "$owner" = "$me" ] || unsafe_why="it belongs to uid $owner, not to this user (uid ${me:-?}) or root" ;;
    esac
    [ -z "$unsafe_why" ]
}

case $0 in
*/*) conf_default=${0%/*}/qbt-hook.conf ;;
*) conf_default=./qbt-hook.conf ;;
esac
conf=${QBHOOK_HOOK_CONF:-$conf_default}
conf_note= # said again when the event then fails: the conf may be why
if [ ! -e "$conf" ]; then
    # No conf next to the script is normal (the environment holds the settings); a named one
    # that is not there is a mistake, which silence turned into a wrong URL or no token.
    if [ -n "${QBHOOK_HOOK_CONF-}" ]; then
        conf_note="QBHOOK_HOOK_CONF $conf does not exist"
    fi
elif [ ! -f "$conf" ] || [ ! -r "$conf" ]; then
    conf_note="cannot read conf $conf as uid $(id -u 2>/dev/null)"
elif ! owned_safely "$conf"; then
    log_failure "refusing conf $conf: $unsafe_why; nothing sent (the next sweep reconciles $1 ${4:-${2-}})"
    exit 0
else
    load_conf "$conf"
fi
if [ -n "$conf_note" ]; then
    log_failure "$conf_note: its settings are not used, trying with the environment and defaults"
    conf_note="; $conf_note"
fi

event=${1-}
case $event in
added | finished) ;;
*)
    log_failure "first argument must be 'added' or 'finished', got '$event'; nothing sent"
    exit 0
    ;;
esac

case ${QBHOOK_HOOK_MODE-} in
'' | direct) ;;
*)
    # A typo ("Direct", "direct ") sent over HTTP without a word: said once, and still sent.
    mode_shown=$(printf '%s' "$QBHOOK_HOOK_MODE" | tr '\r\n' '  ' | cut -c1-40)
    log_failure "QBHOOK_HOOK_MODE='$mode_shown' is not a mode (direct, or unset for HTTP); falling back to HTTP"
    ;;
esac

if [ "${QBHOOK_HOOK_MODE-}" = direct ]; then
    if command -v qbhook >/dev/null 2>&1; then
        # "--": a torrent named --help or -- is a value, not an option for qbhook.
        if ! out=$(qbhook hook -- "$@" 2>&1); then
            log_failure "qbhook hook $event ${4-} failed: $out"
        fi
        exit 0
    fi
    log_failure "QBHOOK_HOOK_MODE=direct but qbhook is not on PATH; falling back to HTTP"
fi

token=${QBHOOK_TOKEN-}
if [ -z "$token" ] && [ -n "${QBHOOK_TOKEN_FILE-}" ]; then
    if [ -r "$QBHOOK_TOKEN_FILE" ]; then
        if ! owned_safely "$QBHOOK_TOKEN_FILE"; then
            log_failure "refusing QBHOOK_TOKEN_FILE $QBHOOK_TOKEN_FILE: $unsafe_why; nothing sent" \
                "(the next sweep reconciles $event ${4:-${2-}})"
            exit 0
        fi
        IFS= read -r token <"$QBHOOK_TOKEN_FILE" || :
        token=$(printf '%s' "$token" | tr -d '\r') # files written on Windows
    else
        log_failure "cannot read QBHOOK_TOKEN_FILE $QBHOOK_TOKEN_FILE"
    fi
fi
url=${QBHOOK_URL:-http://127.0.0.1:9797}
url=${url%/}/hook/qbittorrent

# Only the fields qbhook reads (qbhook.events.parse.parse_qbt_hook: event, K, I, J, F and
# instance) are sent, each at most FIELD_MAX bytes: N, L, G, R, D, C and Z were sent too, and
# a 100,000-byte name (qBittorrent allows any) made a 300 KB body, refused whole (413, the
# hashes with it), and cost BusyBox awk a minute of CPU. A hash is 40 or 64 bytes and a path
# at most PATH_MAX (4096); a longer value cannot be used, so it goes empty, said in one line
# (an over-long F leaves the hashes to name the torrent). So the body stays under 80 KB: well
# inside qbhook's server.max_body (256 KiB by default), one argv item for wget (128 KiB),
# and seconds of awk at most, inside the deadline, which curl starts only once it has read it.
FIELD_MAX=4096

# Sets fitted to $2 (field $1's value), or to nothing when it is longer than FIELD_MAX bytes.
fit() {
    fitted=$2
    # ${#} counts characters, and a character is 1 to 4 bytes: only a long value is measured.
    [ "${#2}" -gt $((FIELD_MAX / 4)) ] || return 0
    size=$(printf '%s' "$2" | wc -c | tr -d ' \t')
    [ "$size" -gt "$FIELD_MAX" ] || return 0
    fitted=
    log_failure "$event: field $1 is $size bytes, more than the $FIELD_MAX qbhook takes; sent empty"
}

# Build "event=..&I=..&J=.." with every value byte percent-encoded: argv cannot hold NUL,
# so NUL separates the values on the way through od, and awk turns each separator into
# "&NAME=". Two processes for all fields, whatever they contain.
# A form field must decode as UTF-8 (qbhook refuses the whole body otherwise), but names
# and paths on Linux are bytes that need not be: a value that is not valid UTF-8 is sent
# as "NAME.hex=<its bytes in hex>" instead, and qbhook decodes it back byte for byte.
# The check follows the UTF-8 standard (no overlongs, surrogates or values past U+10FFFF)
# and compares two-digit lowercase hex as strings, so any POSIX awk (mawk, BusyBox) works.
form_body() {
    printf '%s\0' "$event" "$field_I" "$field_J" "$field_K" "$field_F" "$field_instance" |
        od -An -v -tx1 |
        awk -v names="event I J K F instance" '
            function start() { pct = ""; hex = ""; ok = 1; need = 0; lo = "80"; hi = "bf" }
            function utf8(b) {
                if (need > 0) {
                    if (b < lo || b > hi) return 0
                    need--; lo = "80"; hi = "bf"; return 1
                }
                if (b <= "7f") return 1
                if (b >= "c2" && b <= "df") { need = 1; return 1 }
                if (b == "e0") { need = 2; lo = "a0"; return 1 }
                if (b == "ed") { need = 2; hi = "9f"; return 1 }
                if (b >= "e1" && b <= "ef") { need = 2; return 1 }
                if (b == "f0") { need = 3; lo = "90"; return 1 }
                if (b == "f4") { need = 3; hi = "8f"; return 1 }
                if (b >= "f1" && b <= "f3") { need = 3; return 1 }
                return 0
            }
            function finish() {
                if (i > n) return
                if (i > 1) printf "&"
                if (ok && need == 0) printf "%s=%s", name[i], pct
                else printf "%s.hex=%s", name[i], hex
            }
            BEGIN { n = split(names, name, " "); i = 1; start() }
            {
                for (f = 1; f <= NF; f++) {
                    if ($f == "00") { finish(); i++; start() }
                    else {
                        pct = pct "%" $f; hex = hex $f
                        if (ok) ok = utf8($f "")
                    }
                }
            }'
}

# Every request is bounded in total time (qBittorrent starts one hook per torrent, and a
# server that drips a byte now and then must not pile them up): curl has --max-time; wget's
# -T would bound each read, not the call, so a watchdog kills it at the deadline.
DEADLINE=4

send_curl() {
    # The token goes through a here-document on fd 3, not argv: argv is world-readable
    # in /proc. The body goes on stdin because it may exceed the size of one argv item.
    # The last line is "CODE CONNECTS": 0 connects means nothing reached qbhook serve.
    if [ -d /dev/fd ]; then
        form_body |
            curl -sS -o - -w '\n%{http_code} %{num_connects}' --connect-timeout 2 --max-time "$DEADLINE" \
                -H @/dev/fd/3 --data-binary @- -- "$url" 2>&1 3<<EOF
$TOKEN_HEADER: $token
EOF
    else
        form_body |
            curl -sS -o - -w '\n%{http_code} %{num_connects}' --connect-timeout 2 --max-time "$DEADLINE" \
                -H "$TOKEN_HEADER: $token" --data-binary @- -- "$url" 2>&1
    fi
}

send_wget() {
    # BusyBox wget (Alpine images) knows neither --tries nor a header file; GNU wget
    # would retry 20 times by default.
    tries=
    if wget --help 2>&1 | grep -q -e '--tries'; then tries=--tries=1; fi
    body=$(form_body)
    # wget itself is the background job (not a subshell around it), so the watchdog's
    # kill reaches the process that holds the connection. No -T: the watchdog bounds the
    # whole call, and Debian's BusyBox 1.35 wget crashes (SIGSEGV) on -T.
    # shellcheck disable=SC2086 # $tries is one word or nothing
    wget -q -O - $tries --header="$TOKEN_HEADER: $token" \
        --header='Content-Type: application/x-www-form-urlencoded' \
        --post-data="$body" -- "$url" 2>&1 &
    job=$!
    # The watchdog's streams go to /dev/null: holding the $(...) pipe open would make the
    # caller wait for it. Stopped early, it takes its sleep along.
    (
        trap 'kill "$nap" 2>/dev/null; exit 0' TERM
        sleep "$DEADLINE" &
        nap=$!
        wait "$nap" && kill "$job" 2>/dev/null
    ) </dev/null >/dev/null 2>&1 &
    dog=$!
    wait "$job"
    rc=$?
    kill "$dog" 2>/dev/null
    wait "$dog" 2>/dev/null
    if [ "$rc" -eq 0 ]; then
        printf '\n200'
    elif [ "$rc" -eq 143 ]; then # SIGTERM: the watchdog's
        printf '\nno answer within %s s' "$DEADLINE"
    fi
    return "$rc"
}

fit I "${2-}"
field_I=$fitted
fit J "${3-}"
field_J=$fitted
fit K "${4-}"
field_K=$fitted
fit F "${8-}"
field_F=$fitted
fit instance "${QBHOOK_INSTANCE-}"
field_instance=$fitted
subject="$event ${field_K:-$field_I}" # names the event in what is logged

TOKEN_HEADER=X-Qbhook-Token
if command -v curl >/dev/null 2>&1; then
    client=curl
    out=$(send_curl)
    status=$?
elif command -v wget >/dev/null 2>&1; then
    client=wget
    out=$(send_wget)
    status=$?
else
    log_failure "neither curl nor wget found; $subject not sent$conf_note"
    exit 0
fi

code=${out##*
}
connects= # wget cannot say
if [ "$client" = curl ]; then
    connects=${code##* }
    code=${code%% *}
    out=${out%" $connects"}
fi
detail=$(printf '%s' "$out" | tr '\n' ' ' | cut -c1-300)
case $status:$code:$connects in
0:2??:*) exit 0 ;;
6:*:0 | 7:*:0 | 28:*:0)
    # Unresolved (6), refused (7) or --connect-timeout (28 before any connect): nothing reached
    # qbhook serve. Not any exit with 0 connects: a malformed URL (3), a scheme curl does not
    # speak (1) or a body it could not read (26) never tried to connect, and "is qbhook serve
    # running?" sent the reader to the wrong place; they take the last line, with curl's words.
    log_failure "POST $url for $subject failed: cannot connect, the event was not delivered" \
        "(the next sweep reconciles it); is qbhook serve running and listening there (QBHOOK_URL)? $detail$conf_note"
    exit 0
    ;;
28:* | 143:*)
    # curl's --max-time after connecting (28) or wget's watchdog (143): intake may still be
    # queueing it (it waits up to 60 s for a busy catalog), so "failed" would be a guess, and
    # often wrong. wget cannot tell a connect that hung from an answer that did.
    log_failure "POST $url for $subject: no answer within $DEADLINE s:" \
        "the event may or may not be queued (the next sweep reconciles it);" \
        "if this repeats, see qbhook serve's log (a busy catalog?)$conf_note"
    exit 0
    ;;
esac
log_failure "POST $url for $subject failed (exit $status): $detail$conf_note"
exit 0
