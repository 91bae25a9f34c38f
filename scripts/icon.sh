#!/usr/bin/env bash
# Regenerates the app icons in icons/ from a drawing made here (five rounded bars of a sound
# wave on a violet-to-pink rounded square). Needs ImageMagick (`convert`) and `npm ci` done.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(mktemp --suffix=.png)
trap 'rm -f "$src"' EXIT
convert -size 1024x1024 gradient:'#7c5cff-#ff5c8a' \
  \( -size 1024x1024 xc:none -fill white -draw "roundrectangle 0,0 1023,1023 220,220" \) \
  -compose DstIn -composite -compose over -fill white \
  -draw "roundrectangle 212,432 292,592 40,40" \
  -draw "roundrectangle 342,332 422,692 40,40" \
  -draw "roundrectangle 472,232 552,792 40,40" \
  -draw "roundrectangle 602,352 682,672 40,40" \
  -draw "roundrectangle 732,452 812,572 40,40" \
  -depth 8 "$src"
npx tauri icon "$src" --output icons
# Only the desktop formats are bundled; drop the mobile and Windows Store sets.
rm -rf icons/android icons/ios icons/Square*Logo.png icons/StoreLogo.png
