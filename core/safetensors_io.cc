// The file side of safetensors I/O (attn/safetensors.h): loading reads a
// regular file without blocking on anything else, saving replaces the target
// atomically (a temporary file beside it, synced and renamed). The format
// itself is parsed in core/safetensors.cc.
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
#include "attn/safetensors.h"
#include "core/json.h"
#include "core/safetensors_parse.h"

namespace attn {
namespace detail {
namespace {

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
