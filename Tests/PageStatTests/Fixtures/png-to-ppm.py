# Decodes a PNG (8-bit RGB or RGBA, not interlaced: what rsvg-convert writes) to a binary PPM on
# standard output, with nothing but the standard library: the map tests read pixels with it.
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
if data[:8] != b'\x89PNG\r\n\x1a\n':
    sys.exit('not a PNG')
pos, idat, header = 8, [], None
while pos < len(data):
    length, kind = struct.unpack('>I4s', data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    pos += 12 + length
    if kind == b'IHDR':
        header = struct.unpack('>IIBBBBB', body)
    elif kind == b'IDAT':
        idat.append(body)
    elif kind == b'IEND':
        break
width, height, depth, colour, _, _, interlace = header
if depth != 8 or interlace != 0 or colour not in (2, 6):
    sys.exit('unsupported PNG: depth %d, colour type %d, interlace %d' % (depth, colour, interlace))
bpp = 3 if colour == 2 else 4
stride = width * bpp
raw = zlib.decompress(b''.join(idat))
out = bytearray()
prev = bytearray(stride)
offset = 0
for y in range(height):
    kind = raw[offset]
    line = bytearray(raw[offset + 1:offset + 1 + stride])
    offset += 1 + stride
    if kind == 1:
        for x in range(bpp, stride):
            line[x] = (line[x] + line[x - bpp]) & 255
    elif kind == 2:
        line = bytearray((a + b) & 255 for a, b in zip(line, prev))
    elif kind == 3:
        for x in range(stride):
            left = line[x - bpp] if x >= bpp else 0
            line[x] = (line[x] + ((left + prev[x]) >> 1)) & 255
    elif kind == 4:
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    elif kind != 0:
        sys.exit('bad PNG filter %d' % kind)
    prev = line
    if bpp == 3:
        out += line
    else:
        for x in range(0, stride, 4):
            out += line[x:x + 3]
sys.stdout.buffer.write(b'P6\n%d %d\n255\n' % (width, height) + bytes(out))
