// The safetensors file format for state_dicts (https://huggingface.co/docs/
// safetensors): an 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the raw little-endian tensor data, offsets relative to its start.
// attn reads and writes F32 tensors of rank 0 to 4; any other dtype is an
// error naming the tensor and the dtype.
#pragma once

#include <map>
#include <string>

#include "attn/module.h"
#include "attn/tensor.h"

namespace attn {

// Reads every tensor of the file. Safe on untrusted files: every problem is
// an IoError naming the file and, where there is one, the tensor. That is
// the case when the path holds a NUL byte (the OS would open another file),
// when the file is missing, not a regular file (a directory, FIFO, socket or
// device, also behind a symbolic link: refused by kind, without blocking),
// unreadable, shorter than 8 bytes, or
// declares a header longer than the rest of the file (or than the format's
// 100 MB); when the header is not UTF-8 JSON (malformed, nested deeper than
// 128 levels, a duplicate key in any object); when "__metadata__" is not an
// object of strings (or null); when an entry lacks or repeats one of "dtype",
// "shape", "data_offsets"; for a dtype other than F32; for a shape of rank
// above 4 or with an extent that is not an integer in [0, 2^40], or whose
// element count overflows or exceeds 2^40; for data_offsets that are not two
// integers in [0, 2^64 - 1], are reversed, or span other than 4 * numel
// bytes; and unless the tensors, sorted by offsets, tile the data section
// exactly (each begins where the previous ends, the last ends at the end of
// the file), as in the format's reference implementation. Unknown fields of
// an entry are ignored. Messages quote names, dtypes and paths with bytes
// that are not valid UTF-8, and control characters, escaped as \xNN.
// The header length and every offset are checked against the file's size
// before anything is allocated: reading allocates the tensors' data (the
// data section, read straight into them) plus bookkeeping proportional to
// the header, never an amount a number in the header asks for.
StateDict load_safetensors(const std::string& path);

// Writes the tensors (keys in map order, data 8-byte aligned). Throws IoError
// when the path holds a NUL byte, when the file cannot be written, when a
// tensor is named "__metadata__", or
// when a name or metadata string is not valid UTF-8 (it could not be read
// back).
// The file is replaced atomically: the data goes to a new file beside it
// (".<name>.tmpXXXXXX", mode 0666 less the umask, or the replaced file's
// permission bits; the directory must be writable), which is synced and
// renamed over the path, and the directory synced. If the save fails (a full
// disk, a quota, a file-size limit), the file is left byte for byte as it was
// and the new one removed; a reader opens the old file or the new one, never
// a mix. A process killed mid-save may leave the hidden temporary file
// behind. A symbolic link is followed: the link stays and the file it points
// to is replaced (created if the link dangles). Other hard links to a
// replaced file keep the old data. A path that exists but is not a regular
// file (a directory, FIFO, socket or device) is refused by kind before
// anything is written.
void save_safetensors(const std::string& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace attn
