#!/usr/bin/env bash
# Regenerates the bundled sample recordings: short real speech in the formats telephony
# systems export. Needs espeak-ng, sox and lame (Debian: apt-get install espeak-ng sox lame).
# The outputs are committed; this script only documents how they were made.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

say() {  # say NAME TEXT: speech at espeak's native 22.05 kHz mono
  espeak-ng -v en-us -s 150 -w "$tmp/$1.wav" "$2"
}

say a "Thank you for calling Acme Plumbing. This call may be recorded for quality."
say b "Hi, I am calling about the quote you sent for the water heater."
say c "Hello, this is Dana from Riverside Dental, returning your call about Tuesday."
say d "Your appointment is confirmed for nine thirty tomorrow morning. Goodbye."
say e "I would like to cancel my subscription, please transfer me to billing."
say f "Please hold while I look up your account number."
say g "We are closed right now. Please leave a message after the tone."
say h "Yes, the technician can be there between two and four this afternoon."

# 8 kHz mono 16-bit PCM: the classic PBX export.
sox "$tmp/a.wav" -r 8000 -c 1 -b 16 -e signed-integer call-0001-pcm8k.wav
# 8 kHz mono G.711 mu-law: what most US telephony stores.
sox "$tmp/b.wav" -r 8000 -c 1 -e mu-law call-0002-ulaw8k.wav
# 8 kHz mono G.711 A-law: European trunks.
sox "$tmp/c.wav" -r 8000 -c 1 -e a-law call-0003-alaw8k.wav
# 16 kHz stereo PCM: dual-channel (caller left, agent right), second channel a delayed copy.
sox -M "$tmp/d.wav" "|sox $tmp/d.wav -p pad 0.3 0 trim 0" -r 16000 -b 16 call-0004-stereo16k.wav remix 1 2
# CBR mp3 with ID3v2 and ID3v1 tags.
sox "$tmp/e.wav" -r 8000 -c 1 "$tmp/e8.wav"
lame --quiet -b 32 --cbr --add-id3v2 --tt "Inbound call 0005" --ta "Acme PBX" --tl "Recordings" \
  --ty 2024 --tc "exported by pbx-export 2.1" "$tmp/e8.wav" call-0005-cbr.mp3
# VBR mp3 with a Xing header, no ID3 tags.
lame --quiet -V 6 --noreplaygain "$tmp/f.wav" call-0006-vbr.mp3
# 22.05 kHz mono mp3 (MPEG-2 Layer III) with ID3v2.
lame --quiet -b 48 --add-id3v2 --tt "Voicemail" "$tmp/g.wav" call-0007-mpeg2.mp3
# 8 kHz mono PCM wav with a space in its name, as exports often have.
sox "$tmp/h.wav" -r 8000 -c 1 -b 16 "call 0008 callback.wav"
ls -l
