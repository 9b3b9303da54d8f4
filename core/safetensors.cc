#include "attn/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "attn/error.h"
#include "core/json.h"
#include "core/safetensors_parse.h"

namespace attn {
namespace detail {
namespace {

using Kind = JsonReader::Kind;

// Limits of attn's tensors (see Tensor): an extent or element count above
// 2^40 could never be backed by a file anyway.
constexpr uint64_t kMaxExtent = uint64_t{1} << 40;
constexpr uint64_t kMaxNumel = uint64_t{1} << 40;

// `s` as printable UTF-8, for a message that quotes a name, a dtype or a
// path: each byte that is not part of valid UTF-8, and each byte of a control
// character (C0, DEL, C1), becomes \xNN. Backslashes are kept as they are, so
// that a message passes through unchanged a second time.
std::string printable(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto escape = [&out](unsigned char byte) {
    char code[5];
    std::snprintf(code, sizeof(code), "\\x%02x", static_cast<unsigned>(byte));
    out += code;
  };
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t length = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (length > s.size() - i || !is_valid_utf8(s.data() + i, length)) {
      escape(c);  // the bytes after it are looked at on their own
      ++i;
      continue;
    }
    const bool control =
        c < 0x20 || c == 0x7F || (c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0);
    for (size_t k = 0; k < length; ++k) {
      if (control) {
        escape(static_cast<unsigned char>(s[i + k]));
      } else {
        out += s[i + k];
      }
    }
    i += length;
  }
  return out;
}

std::string in_quotes(const std::string& s) { return "'" + printable(s) + "'"; }

// Throws IoError unless `path` is free of NUL bytes: the OS would open it up
// to the first one, another file than the caller named.
void check_path(const std::string& path, const char* caller) {
  const size_t nul = path.find('\0');
  if (nul == std::string::npos) return;
  std::string shown = path;
  for (size_t i = nul; i < shown.size(); ++i) {
    if (shown[i] == '\0') shown.replace(i, 1, "\\0");
  }
  throw IoError(std::string(caller) + ": the path " + in_quotes(shown) + " contains a NUL byte");
}

// A name or value from the file (up to 100 MB), quoted and cut short (not
// in the middle of a UTF-8 character: back over up to 3 continuation bytes).
std::string cut(const std::string& s) {
  constexpr size_t kMax = 100;
  if (s.size() <= kMax) return in_quotes(s);
  size_t n = kMax;
  while (n > kMax - 3 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return in_quotes(s.substr(0, n) + "...");
}

std::string offsets_to_string(const TensorEntry& e) {
  return "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
}

// An integer in [0, max]; "-0" is 0 as in serde_json.
bool to_unsigned(const JsonReader::Number& n, uint64_t max, uint64_t& out) {
  if (!n.integer || n.overflow || (n.negative && n.magnitude != 0) || n.magnitude > max) {
    return false;
  }
  out = n.magnitude;
  return true;
}

void read_shape(JsonReader& in, const std::string& where, TensorEntry& entry) {
  const std::string rule = "; extents must be integers from 0 to 2^40";
  if (in.peek() != Kind::kArray) throw IoError(where + ": \"shape\" is not an array" + rule);
  in.begin_array();
  while (in.next_element()) {
    if (entry.shape.size() == Tensor::kMaxRank) {
      throw IoError(where + " has more than " + std::to_string(Tensor::kMaxRank) +
                    " extents in \"shape\"; attn supports up to " +
                    std::to_string(Tensor::kMaxRank) + " dimensions");
    }
    if (in.peek() != Kind::kNumber) throw IoError(where + ": \"shape\" holds a non-number" + rule);
    const JsonReader::Number n = in.read_number();
    uint64_t extent = 0;
    if (!to_unsigned(n, kMaxExtent, extent)) {
      throw IoError(where + " has shape extent " + n.text + rule);
    }
    entry.shape.push_back(static_cast<int64_t>(extent));
  }
}

void read_offsets(JsonReader& in, const std::string& where, TensorEntry& entry) {
  const std::string rule = "; \"data_offsets\" must be [begin, end], integers from 0 to 2^64 - 1";
  if (in.peek() != Kind::kArray) throw IoError(where + ": \"data_offsets\" is not an array" + rule);
  in.begin_array();
  uint64_t values[2] = {0, 0};
  size_t count = 0;
  while (in.next_element()) {
    if (count == 2) throw IoError(where + " has more than two \"data_offsets\"" + rule);
    if (in.peek() != Kind::kNumber) {
      throw IoError(where + ": \"data_offsets\" holds a non-number" + rule);
    }
    const JsonReader::Number n = in.read_number();
    if (!to_unsigned(n, UINT64_MAX, values[count])) {
      throw IoError(where + " has data offset " + n.text + rule);
    }
    ++count;
  }
  if (count != 2) throw IoError(where + " has " + std::to_string(count) + " data_offsets" + rule);
  entry.begin = values[0];
  entry.end = values[1];
}

TensorEntry read_entry(JsonReader& in, std::string name, const std::string& what) {
  const std::string where = what + ": tensor " + cut(name);
  if (in.peek() != Kind::kObject) throw IoError(where + " is not a JSON object");
  TensorEntry entry;
  bool has_dtype = false, has_shape = false, has_offsets = false;
  in.begin_object();
  std::string key;
  while (in.next_key(key)) {  // a repeated field throws here
    if (key == "dtype") {
      if (in.peek() != Kind::kString) throw IoError(where + ": \"dtype\" is not a string");
      const std::string dtype = in.read_string();
      if (dtype != "F32") {
        throw IoError(where + " has dtype " + cut(dtype) +
                      "; attn reads F32 only (convert with tensor.float() before saving)");
      }
      has_dtype = true;
    } else if (key == "shape") {
      read_shape(in, where, entry);
      has_shape = true;
    } else if (key == "data_offsets") {
      read_offsets(in, where, entry);
      has_offsets = true;
    } else {
      in.skip_value();  // the reference implementation ignores unknown fields
    }
  }
  if (!has_dtype || !has_shape || !has_offsets) {
    throw IoError(where +
                  " needs \"dtype\" (string), \"shape\" (array) and \"data_offsets\" "
                  "([begin, end])");
  }
  if (entry.end < entry.begin) {
    throw IoError(where + " has reversed data_offsets " + offsets_to_string(entry));
  }
  // Extents are at most 2^40 each, but their product and its byte size can
  // still overflow 64 bits: checked.
  uint64_t numel = 1, bytes = 0;
  for (const int64_t extent : entry.shape) {
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(extent), &numel)) {
      throw IoError(where + " has shape " + shape_to_string(entry.shape) +
                    " whose element count overflows 64 bits");
    }
  }
  if (numel > kMaxNumel) {
    throw IoError(where + " has shape " + shape_to_string(entry.shape) + " of " +
                  std::to_string(numel) + " elements; attn's limit is 2^40");
  }
  bytes = numel * sizeof(float);  // <= 2^42: no overflow
  if (entry.end - entry.begin != bytes) {
    throw IoError(where + " of shape " + shape_to_string(entry.shape) + " needs " +
                  std::to_string(bytes) + " bytes but data_offsets " + offsets_to_string(entry) +
                  " hold " + std::to_string(entry.end - entry.begin));
  }
  entry.name = std::move(name);
  return entry;
}

// "__metadata__": null or an object of strings (serde: Option<HashMap<String, String>>).
void read_metadata(JsonReader& in, const std::string& what) {
  const Kind kind = in.peek();
  if (kind == Kind::kNull) {
    in.skip_value();
    return;
  }
  if (kind != Kind::kObject) {
    throw IoError(what + ": \"__metadata__\" is not a JSON object (of string values)");
  }
  in.begin_object();
  std::string key;
  while (in.next_key(key)) {
    if (in.peek() != Kind::kString) {
      throw IoError(what + ": \"__metadata__\" value " + cut(key) + " is not a string");
    }
    in.read_string();
  }
}

std::string too_short(const std::string& what, uint64_t size) {
  return what + " is " + std::to_string(size) + " bytes, too short for a safetensors header";
}

// A tensor for the entry (its data to be filled in). Tensor refuses more
// bytes than the machine's memory with a ShapeError: an IoError here.
Tensor make_tensor(const TensorEntry& e, const std::string& what) {
  try {
    return Tensor::empty(e.shape);
  } catch (const ShapeError& error) {
    throw IoError(what + ": tensor " + cut(e.name) + " cannot be allocated: " + error.what());
  }
}

std::string os_error(int code) { return std::error_code(code, std::generic_category()).message(); }

// What a file that is not a regular one is, for messages.
std::string not_regular(mode_t mode) {
  const char* kind = S_ISDIR(mode)    ? "a directory"
                     : S_ISFIFO(mode) ? "a FIFO (named pipe)"
                     : S_ISSOCK(mode) ? "a socket"
                     : S_ISCHR(mode)  ? "a character device"
                     : S_ISBLK(mode)  ? "a block device"
                                      : nullptr;
  return kind ? std::string("is ") + kind + ", not a regular file" : "is not a regular file";
}

// An open file descriptor, closed when it goes out of scope.
class File {
 public:
  explicit File(int fd) : fd_(fd) {}
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  // Closes it now: close(2)'s errno, or 0.
  int close() {
    const int fd = fd_;
    fd_ = -1;
    return ::close(fd) == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

int open_retrying(const char* path, int flags, mode_t mode = 0) {
  int fd;
  do {
    fd = ::open(path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

void read_exactly(int fd, char* out, uint64_t count, const std::string& what) {
  while (count > 0) {
    const ssize_t got = ::read(fd, out, std::min<uint64_t>(count, uint64_t{1} << 30));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw IoError(what + ": error reading: " + os_error(errno));
    if (got == 0) {
      throw IoError(what + ": error reading (the file ended early: changed while reading?)");
    }
    out += got;
    count -= static_cast<uint64_t>(got);
  }
}

// Throws IoError(`what` + ": " + the error + `after`).
void write_all(int fd, const char* data, uint64_t count, const std::string& what,
               const std::string& after) {
  while (count > 0) {
    const ssize_t put = ::write(fd, data, std::min<uint64_t>(count, uint64_t{1} << 30));
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) throw IoError(what + ": " + os_error(errno) + after);
    data += put;
    count -= static_cast<uint64_t>(put);
  }
}

// The file a save replaces: `path`, or where it is a symbolic link, the file
// at the end of its chain of links (which need not exist yet), so that the
// link is kept and the file it points to is replaced, as writing through the
// link did.
std::string follow_links(const std::string& path, const std::string& what) {
  std::string p = path;
  for (int hops = 0; hops < 40; ++hops) {  // Linux's limit (ELOOP)
    struct stat status;
    if (::lstat(p.c_str(), &status) != 0 || !S_ISLNK(status.st_mode)) return p;
    std::error_code error;
    const std::filesystem::path target = std::filesystem::read_symlink(p, error);
    if (error) {
      throw IoError(what + ": cannot read the symbolic link " + in_quotes(p) + ": " +
                    error.message());
    }
    p = target.is_absolute() ? target.string()
                             : (std::filesystem::path(p).parent_path() / target).string();
  }
  throw IoError(what + ": too many levels of symbolic links");
}

// Six characters for a temporary file's name, different from call to call
// and from process to process (a clash is retried: the file is created with
// O_EXCL).
std::string random_suffix() {
  static std::atomic<uint64_t> counter{0};
  uint64_t x = counter.fetch_add(1) * 0x9E3779B97F4A7C15u ^
               (static_cast<uint64_t>(getpid()) << 40) ^
               static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;  // splitmix64's finalizer
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
  x ^= x >> 31;
  static const char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string out;
  for (int i = 0; i < 6; ++i, x /= 62) out += kChars[x % 62];
  return out;
}

}  // namespace

uint64_t safetensors_header_size(const unsigned char* first8, uint64_t file_size,
                                 const std::string& what) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | first8[i];
  if (n > kMaxSafetensorsHeaderBytes || n > file_size - 8) {
    throw IoError(what + " declares a header of " + std::to_string(n) + " bytes but the file has " +
                  std::to_string(file_size) + " bytes" +
                  (n > kMaxSafetensorsHeaderBytes ? " (and the format's limit is 100 MB)" : ""));
  }
  return n;
}

std::vector<TensorEntry> parse_safetensors_header(const char* json, size_t size,
                                                  const std::string& what) {
  try {
    // Syntax first (and duplicate keys), so that a malformed document is
    // reported as such rather than by whichever entry comes first.
    JsonReader syntax(json, size, what);
    syntax.skip_value();
    syntax.finish();
  } catch (const IoError& error) {
    // The reader quotes up to 64 bytes of a duplicate key: control
    // characters (from \u escapes), or a character cut in two.
    throw IoError(printable(error.what()));
  }
  JsonReader in(json, size, what);
  if (in.peek() != Kind::kObject) throw IoError(what + ": the header is not a JSON object");
  in.begin_object();
  std::vector<TensorEntry> entries;
  std::string key;
  while (in.next_key(key)) {  // a repeated tensor name throws here
    if (key == "__metadata__") {
      read_metadata(in, what);
    } else {
      entries.push_back(read_entry(in, std::move(key), what));
    }
  }
  in.finish();
  return entries;
}

void check_safetensors_layout(std::vector<TensorEntry>& entries, uint64_t data_size,
                              const std::string& what) {
  std::sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.name < b.name;
  });
  uint64_t expected_begin = 0;
  for (const TensorEntry& e : entries) {
    if (e.end > data_size) {
      throw IoError(what + ": tensor " + cut(e.name) + " has data_offsets " + offsets_to_string(e) +
                    " past the end of the data section (" + std::to_string(data_size) +
                    " bytes): truncated file?");
    }
    if (e.begin != expected_begin) {
      throw IoError(what + ": tensor " + cut(e.name) + " starts at byte " +
                    std::to_string(e.begin) + " of the data, expected " +
                    std::to_string(expected_begin) + " (overlapping tensors or a hole)");
    }
    expected_begin = e.end;
  }
  if (expected_begin != data_size) {
    throw IoError(what + ": the tensors cover " + std::to_string(expected_begin) +
                  " bytes of data but the file holds " + std::to_string(data_size) +
                  " (trailing bytes)");
  }
}

StateDict parse_safetensors(const char* data, size_t size, const std::string& what) {
  if (size < 8) throw IoError(too_short(what, size));
  const uint64_t n =
      safetensors_header_size(reinterpret_cast<const unsigned char*>(data), size, what);
  std::vector<TensorEntry> entries = parse_safetensors_header(data + 8, n, what);
  check_safetensors_layout(entries, size - 8 - n, what);
  const char* section = data + 8 + n;
  StateDict result;
  for (TensorEntry& e : entries) {
    Tensor t = make_tensor(e, what);
    if (e.end > e.begin) std::memcpy(t.data(), section + e.begin, e.end - e.begin);
    result.emplace(std::move(e.name), std::move(t));
  }
  return result;
}

}  // namespace detail

StateDict load_safetensors(const std::string& path) {
  detail::check_path(path, "load_safetensors");
  const std::string what = "load_safetensors: " + detail::in_quotes(path);
  // Only a regular file is opened: a FIFO's open(2) would wait for a writer,
  // and a device's may act on the device. stat() keeps those from being
  // opened at all; O_NONBLOCK and fstat() catch one swapped in meanwhile.
  struct stat status;  // a failed stat falls through to the open below
  if (stat(path.c_str(), &status) == 0 && !S_ISREG(status.st_mode)) {
    throw IoError(what + " " + detail::not_regular(status.st_mode));
  }
  detail::File file(
      detail::open_retrying(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (file.fd() < 0) {
    throw IoError("load_safetensors: cannot open " + detail::in_quotes(path) + ": " +
                  detail::os_error(errno));
  }
  if (fstat(file.fd(), &status) != 0) {
    throw IoError(what + ": cannot determine the file's size: " + detail::os_error(errno));
  }
  if (!S_ISREG(status.st_mode)) throw IoError(what + " " + detail::not_regular(status.st_mode));
  const int flags = fcntl(file.fd(), F_GETFL);
  if (flags < 0 || fcntl(file.fd(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    throw IoError(what + ": cannot read: " + detail::os_error(errno));
  }
  // The size first: nothing is allocated before it bounds the header.
  const auto file_size = static_cast<uint64_t>(status.st_size);
  if (file_size < 8) throw IoError(detail::too_short(what, file_size));
  unsigned char first8[8];
  detail::read_exactly(file.fd(), reinterpret_cast<char*>(first8), 8, what);
  const uint64_t n = detail::safetensors_header_size(first8, file_size, what);
  std::vector<detail::TensorEntry> entries;
  {
    std::string header(static_cast<size_t>(n), '\0');  // n <= file_size - 8
    detail::read_exactly(file.fd(), &header[0], n, what);
    entries = detail::parse_safetensors_header(header.data(), header.size(), what);
  }
  detail::check_safetensors_layout(entries, file_size - 8 - n, what);
  // Sorted by offset and contiguous: the data is read in one sequential pass,
  // straight into the tensors.
  StateDict result;
  for (detail::TensorEntry& e : entries) {
    Tensor t = detail::make_tensor(e, what);
    detail::read_exactly(file.fd(), reinterpret_cast<char*>(t.data()), e.end - e.begin, what);
    result.emplace(std::move(e.name), std::move(t));
  }
  return result;
}

void save_safetensors(const std::string& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata) {
  detail::check_path(path, "save_safetensors");
  // The header must be UTF-8 JSON for load_safetensors (and the reference
  // implementation) to read it back.
  const auto check_utf8 = [](const std::string& s, const char* role) {
    if (!detail::is_valid_utf8(s.data(), s.size())) {
      throw IoError(std::string("save_safetensors: ") + role + " " + detail::cut(s) +
                    " is not valid UTF-8 (safetensors headers are UTF-8 JSON)");
    }
  };
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& kv : metadata) {
      check_utf8(kv.first, "metadata key");
      check_utf8(kv.second, "metadata value");
      if (!first) header += ',';
      first = false;
      detail::append_json_string(header, kv.first);
      header += ':';
      detail::append_json_string(header, kv.second);
    }
    header += '}';
  }
  uint64_t offset = 0;
  for (const auto& item : tensors) {
    if (item.first == "__metadata__") {
      throw IoError("save_safetensors: '__metadata__' is reserved and cannot name a tensor");
    }
    check_utf8(item.first, "tensor name");
    header += header.size() > 1 ? "," : "";
    detail::append_json_string(header, item.first);
    header += ":{\"dtype\":\"F32\",\"shape\":[";
    const std::vector<int64_t>& shape = item.second.shape();
    for (size_t d = 0; d < shape.size(); ++d) header += (d ? "," : "") + std::to_string(shape[d]);
    const uint64_t bytes = static_cast<uint64_t>(item.second.numel()) * 4;
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += '}';
  // Pad with spaces so that the data section starts 8-byte aligned.
  while ((header.size() + 8) % 8 != 0) header += ' ';
  std::string start(8, '\0');  // the header's length, then the header
  for (int i = 0; i < 8; ++i) start[i] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  start += header;

  // The file is replaced atomically: written in full to a new file in the
  // same directory, synced, and renamed over the target. Until the rename the
  // target is untouched; a reader opens either the old file or the new one.
  const std::string what = "save_safetensors: " + detail::in_quotes(path);
  const std::string target = detail::follow_links(path, what);
  const std::string named =  // the file meant, for messages
      target == path ? what : what + " (a link to " + detail::in_quotes(target) + ")";
  struct stat status;
  const bool exists = stat(target.c_str(), &status) == 0;
  if (exists && !S_ISREG(status.st_mode)) {
    throw IoError(named + " " + detail::not_regular(status.st_mode) + "; not replaced");
  }
  const size_t slash = target.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : target.substr(0, slash + 1);
  const std::string name = slash == std::string::npos ? target : target.substr(slash + 1);
  const std::string cannot_open =
      "save_safetensors: cannot open " + detail::in_quotes(path) + " for writing";
  if (name.empty()) throw IoError(cannot_open + ": the path ends with '/'");
  const std::string after = exists ? "; the file is left as it was" : "; no file was created";
  // A file the caller may not write stays protected, as when it was written
  // in place (a rename needs only the directory's permission).
  if (exists && faccessat(AT_FDCWD, target.c_str(), W_OK, AT_EACCESS) != 0) {
    throw IoError(cannot_open + ": " + detail::os_error(errno) + after);
  }
  // ".<name>.tmpXXXXXX", hidden; the name is cut so that it stays within
  // NAME_MAX (255 bytes).
  const std::string prefix =
      (slash == std::string::npos ? "" : dir) + "." + name.substr(0, 200) + ".tmp";
  std::string temp;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    temp = prefix + detail::random_suffix();
    // Mode 0666 less the umask, as for any new file.
    fd = detail::open_retrying(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                               0666);
    if (fd < 0 && !(errno == EEXIST && attempt < 100)) {
      throw IoError(cannot_open + ": cannot create a file in " + detail::in_quotes(dir) + ": " +
                    detail::os_error(errno));
    }
  }
  detail::File file(fd);
  // Removes the temporary file unless it was renamed into place.
  struct Remove {
    const std::string& path;
    bool keep = false;
    ~Remove() {
      if (!keep) ::unlink(path.c_str());
    }
  } cleanup{temp};
  const std::string writing = named + ": error writing";
  // A replaced file keeps its permission bits.
  if (exists && fchmod(file.fd(), status.st_mode & 0777) != 0) {
    throw IoError(writing + ": cannot set the mode: " + detail::os_error(errno) + after);
  }
  detail::write_all(file.fd(), start.data(), start.size(), writing, after);
  for (const auto& item : tensors) {
    detail::write_all(file.fd(), reinterpret_cast<const char*>(item.second.data()),
                      static_cast<uint64_t>(item.second.numel()) * 4, writing, after);
  }
  if (fsync(file.fd()) != 0) throw IoError(writing + ": " + detail::os_error(errno) + after);
  if (const int error = file.close()) {
    throw IoError(writing + ": " + detail::os_error(error) + after);
  }
  if (rename(temp.c_str(), target.c_str()) != 0) {
    throw IoError(named + ": cannot rename the new file into place: " + detail::os_error(errno) +
                  after);
  }
  cleanup.keep = true;
  // The rename is durable once the directory is synced. Best effort where the
  // directory cannot be opened or the file system does not sync directories
  // (EINVAL); a failed sync is reported: the new file may not survive a crash.
  detail::File directory(detail::open_retrying(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (directory.fd() >= 0 && fsync(directory.fd()) != 0 && errno != EINVAL) {
    throw IoError(named + " was replaced, but syncing its directory failed: " +
                  detail::os_error(errno) + " (the change may not survive a crash)");
  }
}

}  // namespace attn
