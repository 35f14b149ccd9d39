#!/bin/sh
# What attaches the versions systemd-sysupdate installs (it only places files), run as root on
# every host by NAME-update.service, NAME-rollback.service and, at boot, NAME-recover.service.
# Written by `portable-service transfers` (crates/portable-service-tools/src/transfers.rs),
# which puts the settings below in place of the marker line.
#
#   switch update     fetch the newest version, attach it if it is new, keep it only if it
#                     comes up healthy
#   switch rollback   go back to the pair that ran before, and never take the one left again
#   switch recover    finish a switch cut short (power cut, kill): the pair it replaced runs
#   switch status     what runs, what was refused, what happened last
#
# The rules it keeps, whatever happens:
# - it decides from what portabled has attached (the images in the attached units' drop-ins),
#   never from which file is newest; versions are ordered as systemd orders them;
# - what runs is never removed: sysupdate is told to protect it (ProtectVersion=);
# - a switch is written down before it starts and crossed out when the new pair is healthy; a
#   switch found written down was cut short, and the pair it replaced is put back;
# - a pair that portabled refuses, or whose units don't come up, is put back by the one before
#   and remembered as bad: it is neither attached nor fetched again (it stays installed, so
#   sysupdate has nothing to fetch) until the feed offers a newer version;
# - one run at a time (a lock per attached image).
set -u
# @SETTINGS@

state=$state_dir/$name
run=/run/portable-service-update/$name
# the image that is attached: the base for an extension, the image itself otherwise
attached_as=${base:-$name}

say() { echo "$name: $*"; }
# A step of a switch, said in the journal (the power-cut tests cut at each of these).
step() { say "$*"; }
die() {
  echo "$name: $*" >&2
  write_status failed "$*"
  exit 1
}

lock() {
  # versions are ordered as systemd orders them, or not at all (251 has sysupdate, not this)
  systemd-analyze compare-versions 1 lt 2 >/dev/null 2>&1 ||
    die "systemd-analyze compare-versions is missing (systemd 252 or newer): versions can't be ordered"
  mkdir -p /run/lock "$state" "$run"
  exec 9>"/run/lock/portable-service-update.$attached_as.lock"
  if ! flock -n 9; then
    say "waiting for another update or rollback of $attached_as"
    flock -w 900 9 || die "another update or rollback of $attached_as held its lock for 15 minutes"
  fi
}

# Atomically and durably: FILE gets standard input.
put() {
  cat >"$1.new" && sync "$1.new" && mv -f "$1.new" "$1" && sync "${1%/*}"
}

# 0 when version $1 is newer than $2, in systemd's own order (252 and newer).
newer() { systemd-analyze compare-versions "$1" gt "$2" >/dev/null 2>&1; }

# The versions of image $1 installed in $dir, newest first.
versions() {
  sorted=
  for f in "$dir/$1"_*.raw; do
    [ -f "$f" ] || continue
    v=${f##*/}
    v=${v#"$1"_}
    v=${v%.raw}
    case $v in '' | *[!A-Za-z0-9.,_+-]*) continue ;; esac
    ahead= placed=
    for o in $sorted; do
      if [ -z "$placed" ] && newer "$v" "$o"; then
        ahead="$ahead $v"
        placed=1
      fi
      ahead="$ahead $o"
    done
    [ -n "$placed" ] || ahead="$ahead $v"
    sorted=$ahead
  done
  echo $sorted
}

# The drop-in directories of the attached units (persistent and runtime).
dropin_dirs() {
  for d in /etc/systemd/system.attached/*.d /run/systemd/system.attached/*.d; do
    [ -d "$d" ] && echo "$d"
  done
}

# The file names of the images the attached units run (RootImage=, ExtensionImages=).
attached_files() {
  dropin_dirs | while read -r d; do
    cat "$d"/*.conf 2>/dev/null
  done | sed -n 's/^RootImage=//p; s/^ExtensionImages=//p' | tr ' ' '\n' |
    sed 's/^-//; s/:.*//; s,.*/,,' | sort -u
}

# The attached version of image $1, if one is.
attached_version() {
  for f in $(attached_files); do
    case $f in "$1"_*.raw)
      f=${f#"$1"_}
      echo "${f%.raw}"
      return
      ;;
    esac
  done
}

# What runs: the pair "BASE_V.raw [EXT_V.raw]", or nothing.
current_pair() {
  if [ -n "$base" ]; then
    b=$(attached_version "$base") e=$(attached_version "$name")
    [ -z "$b" ] || [ -z "$e" ] || echo "${base}_$b.raw ${name}_$e.raw"
  else
    v=$(attached_version "$name")
    [ -z "$v" ] || echo "${name}_$v.raw"
  fi
}

# Whether anything of ours is attached at all (a base without its extension counts).
anything_attached() {
  for f in $(attached_files); do
    case $f in "$attached_as"_*.raw | "$name"_*.raw) return 0 ;; esac
  done
  return 1
}

is_bad() { grep -qxF "$1" "$state/bad" 2>/dev/null; }

# The installed pairs, the newest first (the extension's version first, then the base's), that
# are not bad.
good_pairs() {
  for e in $(versions "$name"); do
    if [ -n "$base" ]; then
      for b in $(versions "$base"); do
        p="${base}_$b.raw ${name}_$e.raw"
        is_bad "$p" || echo "$p"
      done
    else
      p="${name}_$e.raw"
      is_bad "$p" || echo "$p"
    fi
  done
}

# Whether every file of pair $1 is installed.
installed() {
  for f in $1; do [ -f "$dir/$f" ] || return 1; done
}

mark_bad() { # PAIR WHY
  say "remembering $1 as bad: $2"
  { cat "$state/bad" 2>/dev/null; echo "$1"; } | sort -u | put "$state/bad"
}

# Bad pairs whose files are gone (the feed moved on) are forgotten.
forget_gone() {
  [ -f "$state/bad" ] || return 0
  while read -r p; do installed "$p" && echo "$p"; done <"$state/bad" | put "$state/bad"
}

write_status() { # STATE MESSAGE
  mkdir -p "$state"
  {
    echo "STATE=$1"
    echo "RUNNING=$(current_pair)"
    echo "PREVIOUS=$(cat "$state/previous" 2>/dev/null)"
    echo "BAD=$(tr '\n' ',' 2>/dev/null <"$state/bad" | sed 's/,$//')"
    echo "MESSAGE=$2"
    echo "TIME=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } | put "$state/status"
}

# portablectl VERB on pair $2 (the base, then its extension), started and enabled.
portable() {
  verb=$1
  set -- $2
  if [ $# -eq 2 ]; then
    portablectl "$verb" --now --enable --extension "$dir/$2" "$dir/$1" $prefixes
  else
    portablectl "$verb" --now --enable "$dir/$1" $prefixes
  fi
}

# The units attached from pair $1's image (templates aside: they run only as instances).
units_of() {
  set -- $1
  # one grep over every drop-in (/dev/null: never standard input, when none is there)
  grep -lsF "/$1" /dev/null $(dropin_dirs | sed 's,$,/*.conf,') | sed 's,/[^/]*$,,; s,.*/,,; s,\.d$,,' |
    grep -v '@\.' | sort -u
}

# One look at units $@, in one `systemctl show` and one awk (each process costs much on a
# slow host): "up SIGNATURE" when every unit is active (or a oneshot, or a unit never started,
# that ended well; SIGNATURE: each unit's restarts), else "failed WHY" or "pending UNITS".
look() {
  systemctl show -p Id -p ActiveState -p Result -p NRestarts "$@" | awk -F= '
    function emit() {
      if (id == "") return
      if (a == "active" || a == "reloading" || (a == "inactive" && r == "success"))
        up = up id ":" n " "
      else if (a == "failed" || a == "inactive") {
        if (failed == "") failed = id " failed (Result=" r ")"
      } else pending = pending id " "
      id = a = r = n = ""
    }
    /^Id=/ { id = $2 } /^ActiveState=/ { a = $2 } /^Result=/ { r = $2 } /^NRestarts=/ { n = $2 }
    /^$/ { emit() }
    END {
      emit()
      if (failed != "") print "failed " failed
      else if (pending != "") print "pending " pending
      else print "up " up
    }'
}

# Whether the main processes of units $@ run their own programs. A service is active from
# systemd's fork on, and its program runs only once the forked process (systemd's own binary, or
# its systemd-executor) has mounted the image and set up the namespace: seconds on a slow host,
# in which a program that fails at once has not yet failed. The steady wait starts after it.
exec_done() {
  for pid in $(systemctl show -p MainPID --value "$@"); do
    [ "$pid" -gt 0 ] 2>/dev/null || continue
    case $(readlink "/proc/$pid/exe" 2>/dev/null) in
      */systemd | */systemd-executor) return 1 ;;
    esac
  done
}

# Whether pair $1's units are up and running their own programs within $health_timeout s, and
# still up, not restarted, $health_steady s later; if not, $why says what. portabled's files
# are synced meanwhile.
healthy() {
  sync &
  syncing=$!
  units=$(units_of "$1")
  [ -n "$units" ] || {
    why="no unit of $1 is attached"
    return 1
  }
  polls=0
  while :; do
    seen=$(look $units)
    case $seen in
      up*) ! exec_done $units || break ;;
      failed*)
        why=${seen#failed }
        return 1
        ;;
    esac
    if [ "$polls" -ge $((health_timeout * 4)) ]; then
      case $seen in
        up*) why="$(echo $units) still starting (systemd setting up the image) after ${health_timeout} s" ;;
        *) why="${seen#pending }not up after ${health_timeout} s" ;;
      esac
      return 1
    fi
    sleep 0.25
    polls=$((polls + 1))
  done
  say "$1: its programs run; watching them for ${health_steady} s"
  sleep "$health_steady"
  later=$(look $units)
  case $later in
    "$seen") ;;
    up*)
      why="$(echo $units) restarted within ${health_steady} s of the start"
      return 1
      ;;
    failed*)
      why="${later#failed } within ${health_steady} s of its start"
      return 1
      ;;
    *)
      why="${later#pending }stopped within ${health_steady} s of its start"
      return 1
      ;;
  esac
  wait "$syncing"
}

# Detaches whatever of ours is attached (with the extensions it was attached with).
detach_ours() {
  exts=
  for f in $(attached_files); do
    case $f in "$name"_*.raw) [ -z "$base" ] || exts="$exts --extension $dir/$f" ;; esac
  done
  for f in $(attached_files); do
    case $f in "$attached_as"_*.raw) portablectl detach --now --enable $exts "$dir/$f" ;; esac
  done
}

# Leaves pair $1 attached, and nothing else of ours, from whatever state portabled is in;
# $2: the units that pair had attached, which may still run from the unit files portabled
# removed (its reattach detaches, then attaches: when the attach is refused they stay active,
# and an attach of the same units is refused while they are).
put_back() {
  [ "$(current_pair)" != "$1" ] || return 0
  step "putting back ${1:-nothing}"
  if [ -z "$1" ]; then
    detach_ours
  elif anything_attached; then
    portable reattach "$1" || {
      # half attached (cut in portabled's own reattach): detach what it left, then attach
      detach_ours
      stop_units "$2"
      portable attach "$1"
    }
  else
    stop_units "$2"
    portable attach "$1"
  fi
}

stop_units() {
  for u in $1; do
    systemctl stop "$u" 2>/dev/null
    systemctl reset-failed "$u" 2>/dev/null
  done
  return 0
}

# Switches from pair $1 (what runs, or nothing) to pair $2: written down first, then attached,
# then kept only if healthy; otherwise $1 is put back and $2 remembered as bad.
switch_to() {
  from=$1 to=$2
  from_units=
  [ -z "$from" ] || from_units=$(units_of "$from" | tr '\n' ' ')
  printf '%s\n%s\n%s\n' "$from" "$to" "$from_units" | put "$state/switching"
  step "switching from ${from:-nothing} to $to"
  if anything_attached; then verb=reattach; else verb=attach; fi
  if ! portable "$verb" "$to"; then
    why="portablectl $verb refused it"
  elif step "attached $to: checking its units" && healthy "$to"; then
    step "$to runs and is healthy"
    [ -z "$from" ] || echo "$from" | put "$state/previous"
    rm -f "$state/switching" "$state/cut-short"
    sync "$state"
    return 0
  fi
  echo "$name: $to is not healthy: $why" >&2
  mark_bad "$to" "$why"
  put_back "$from" "$from_units" || die "$to: $why; putting back ${from:-nothing} failed too: nothing of $name may run"
  rm -f "$state/switching"
  sync "$state"
  die "$to: $why; ${from:-nothing} runs again"
}

# A switch written down but not crossed out was cut short: the pair it replaced is put back,
# and the next update tries the new one again; a pair whose switch was cut short twice is
# remembered as bad (it may be what stops the host).
recover() {
  [ -f "$state/switching" ] || return 0
  from=$(sed -n 1p "$state/switching") to=$(sed -n 2p "$state/switching")
  from_units=$(sed -n 3p "$state/switching")
  cuts=1
  if [ "$(sed -n 1p "$state/cut-short" 2>/dev/null)" = "$to" ]; then
    cuts=$(($(sed -n 2p "$state/cut-short") + 1))
  fi
  printf '%s\n%s\n' "$to" "$cuts" | put "$state/cut-short"
  say "the switch from ${from:-nothing} to $to was cut short (${cuts} time(s)): putting back ${from:-nothing}"
  [ "$cuts" -lt 2 ] || mark_bad "$to" "its switch was cut short $cuts times"
  if [ -n "$from" ] && ! installed "$from"; then
    die "cannot put back $from: its files are gone"
  fi
  put_back "$from" "$from_units" || die "putting back ${from:-nothing} failed: nothing of $name may run"
  rm -f "$state/switching"
  sync "$state"
}

# What a refused download left; removed before and after a fetch, so that a fixed feed gets
# through (262 refuses a version whose partial download is still there).
partials() { rm -f "$dir"/.sysupdate.partial."$1"_* "$dir"/.#sysupdate"$1"_*; }

# The files of versions that sysupdate removed, left behind (a root hash: see the transfers).
orphans() {
  for ext in $sidecars; do
    for f in "$dir/$1"_*"$ext"; do
      [ -e "$f" ] || continue
      [ -e "${f%"$ext"}.raw" ] || rm -f "$f"
    done
  done
}

# systemd-sysupdate for image $1, from its transfers with the attached version $2 protected.
fetch() {
  defs=$run/sysupdate.$1.d
  rm -rf "$defs"
  mkdir -p "$defs"
  for t in /etc/sysupdate."$1".d/*.transfer /etc/sysupdate."$1".d/*.conf; do
    [ -f "$t" ] || continue
    if [ -n "$2" ]; then
      sed "s/^\[Transfer\]\$/&\nProtectVersion=$2/" "$t"
    else
      cat "$t"
    fi >"$defs/${t##*/}"
  done
  partials "$1"
  step "fetching $1"
  "$sysupdate" --definitions="$defs" update || {
    partials "$1"
    return 1
  }
}

update() {
  lock
  recover
  cur=$(current_pair)
  unfetched=
  fetch "$name" "$(attached_version "$name")" || unfetched=$name
  if [ -n "$base" ] && [ -d "/etc/sysupdate.$base.d" ]; then
    fetch "$base" "$(attached_version "$base")" || unfetched="${unfetched:+$unfetched and }$base"
  fi
  to=$(good_pairs | sed -n 1p)
  step "to run: ${to:-nothing} (running: ${cur:-nothing})"
  if [ -z "$to" ]; then
    die "no version of $name to attach in $dir${unfetched:+ (fetching $unfetched failed)}"
  elif [ "$to" = "$cur" ]; then
    say "$cur runs: nothing newer to switch to"
  else
    switch_to "$cur" "$to"
  fi
  orphans "$name"
  orphans "$attached_as"
  forget_gone
  [ -z "$unfetched" ] || die "fetching $unfetched failed (see above); $(current_pair) runs"
  write_status ok "$(current_pair) runs"
}

rollback() {
  lock
  recover
  cur=$(current_pair)
  [ -n "$cur" ] || die "nothing of $name is attached: nothing to roll back"
  prev=$(cat "$state/previous" 2>/dev/null)
  if [ -z "$prev" ] || [ "$prev" = "$cur" ] || ! installed "$prev" || is_bad "$prev"; then
    # no pair recorded: the newest good one below what runs
    prev=$(good_pairs | grep -vxF "$cur" | while read -r p; do
      set -- $p $cur
      if [ -n "$base" ]; then
        newer "${4#"$name"_}" "${2#"$name"_}" || newer "${3#"$base"_}" "${1#"$base"_}"
      else
        newer "${2%.raw}" "${1%.raw}"
      fi && echo "$p"
    done | sed -n 1p)
  fi
  [ -n "$prev" ] || die "no version of $name kept in $dir to roll back to from $cur"
  mark_bad "$cur" "rolled back by hand"
  switch_to "$cur" "$prev"
  write_status rolled-back "$prev runs; $cur was rolled back and won't be attached again"
}

case "${1:-}" in
  update) update ;;
  rollback) rollback ;;
  recover)
    lock
    recover
    write_status ok "$(current_pair) runs"
    ;;
  status) cat "$state/status" 2>/dev/null || echo "STATE=never-run" ;;
  *)
    echo "usage: $0 update|rollback|recover|status" >&2
    exit 2
    ;;
esac
