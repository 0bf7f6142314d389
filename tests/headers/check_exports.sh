#!/usr/bin/env bash
# check_exports.sh LIBFERRY_SO
# Fails when libferry.so exports a symbol outside the public API: the C API (ferry_*) and C++
# entities of namespace ferry (functions, const members, vtables, typeinfo). Matching is on the
# mangled names, which is exact (a std:: template instance such as std::vector<ferry::X>::... is
# _ZNSt..., not _ZN5ferry...); offenders are printed demangled.
set -euo pipefail
lib=${1:?usage: check_exports.sh LIBFERRY_SO}
[ -f "$lib" ] || { echo "no such library: $lib" >&2; exit 1; }

# Defined dynamic symbols, without the version node (an absolute symbol named FERRY_0).
mapfile -t symbols < <(nm -D --defined-only "$lib" | awk '$2 != "A" { print $3 }' | sed 's/@.*//' | sort -u)
public='^(ferry_|_ZN5ferry|_ZNK5ferry|_ZTVN5ferry|_ZTIN5ferry|_ZTSN5ferry)'

bad=()
c_api=0
cxx_api=0
for s in "${symbols[@]}"; do
  if [[ $s =~ $public ]]; then
    [[ $s == ferry_* ]] && c_api=$((c_api + 1)) || cxx_api=$((cxx_api + 1))
  else
    bad+=("$s")
  fi
done

echo "$lib: ${#symbols[@]} exported symbols: $c_api of the C API, $cxx_api of namespace ferry"
status=0
if [ ${#bad[@]} -gt 0 ]; then
  echo "exported outside the public API (${#bad[@]}):"
  printf '%s\n' "${bad[@]}" | c++filt | sed 's/^/  /'
  status=1
fi
# An empty or stripped export table would pass the check above without proving anything.
for want in ferry_version _ZN5ferry9transport7connect; do
  if ! printf '%s\n' "${symbols[@]}" | grep -q "^$want"; then
    echo "expected export missing: $want ($(echo "${want}" | c++filt))"
    status=1
  fi
done
exit $status
