// save_safetensors replaces a file atomically, and both entry points refuse
// what is not a regular file without blocking (tests/BAD_INPUTS.md, the
// safetensors section). POSIX only, as the implementation is.
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "test_util.h"

namespace attn {
namespace {

namespace fs = std::filesystem;
using testing::random_tensor;

// Each test works in a directory of its own, so that it can see every file
// a save leaves behind.
class SafetensorsDurability : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "attn_st_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
           std::to_string(getpid()) + "/";
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  std::string path(const std::string& name) const { return dir_ + name; }
  // The names in the test's directory.
  std::set<std::string> names() const {
    std::set<std::string> out;
    for (const auto& item : fs::directory_iterator(dir_)) {
      out.insert(item.path().filename().string());
    }
    return out;
  }
  std::string dir_;
};

std::string read_all(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool same(const StateDict& a, const StateDict& b) {
  if (a.size() != b.size()) return false;
  for (const auto& item : a) {
    const auto other = b.find(item.first);
    if (other == b.end() || other->second.shape() != item.second.shape()) return false;
    if (std::memcmp(other->second.data(), item.second.data(),
                    sizeof(float) * item.second.numel()) != 0) {
      return false;
    }
  }
  return true;
}

// "IoError: <message>" for what `call` throws, "returned" if nothing; run on
// a thread of its own, "timed out" when it has not returned within 5 s. A
// call blocked in open(2) is then left behind (detached): the test fails
// instead of hanging.
std::string outcome_within_5s(std::function<void()> call) {
  auto result = std::make_shared<std::promise<std::string>>();
  std::future<std::string> future = result->get_future();
  std::thread([call = std::move(call), result] {
    try {
      call();
      result->set_value("returned");
    } catch (const IoError& e) {
      result->set_value(std::string("IoError: ") + e.what());
    } catch (const std::exception& e) {
      result->set_value(std::string("another exception: ") + e.what());
    }
  }).detach();
  if (future.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    return "timed out (blocked)";
  }
  return future.get();
}

// A save that fails part way (here at a 64 KiB file-size limit, as a full
// disk or a quota would) leaves the previous file byte for byte, and no
// temporary file (was: the target truncated to 64 KiB).
TEST_F(SafetensorsDurability, FailedSaveLeavesTheOldFile) {
  StateDict good;
  good["a"] = random_tensor({3, 5}, 1);
  good["b"] = random_tensor({100}, 2);
  const std::string p = path("model.safetensors");
  save_safetensors(p, good);
  const std::string before = read_all(p);
  StateDict big;  // 262,216 bytes as a file: above the limit
  big["w"] = random_tensor({65536}, 3);
  save_safetensors(path("big.safetensors"), big);
  ASSERT_EQ(fs::file_size(path("big.safetensors")), 262216u);
  fs::remove(path("big.safetensors"));

  // In a child process: the limit and SIGXFSZ are the process's. Returns the
  // message of the IoError the save threw, through a pipe.
  const auto save_limited = [&](const std::string& target) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      signal(SIGXFSZ, SIG_IGN);  // write(2) then fails with EFBIG
      const rlimit limit = {64 * 1024, 64 * 1024};
      std::string message = "(setrlimit failed)";
      if (setrlimit(RLIMIT_FSIZE, &limit) == 0) {
        try {
          save_safetensors(target, big);
          message = "(saved)";
        } catch (const IoError& e) {
          message = std::string("IoError: ") + e.what();
        } catch (...) {
          message = "(another exception)";
        }
      }
      const ssize_t written = write(fds[1], message.data(), message.size());
      _exit(written == static_cast<ssize_t>(message.size()) ? 0 : 1);
    }
    close(fds[1]);
    std::string message;
    char buffer[256];
    for (ssize_t n; (n = read(fds[0], buffer, sizeof(buffer))) > 0;) message.append(buffer, n);
    close(fds[0]);
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return message;
  };
  const std::string message = save_limited(p);
  EXPECT_EQ(message.rfind("IoError: save_safetensors: '" + p + "': error writing: ", 0), 0u)
      << message;
  EXPECT_NE(message.find("left as it was"), std::string::npos) << message;
  const std::string after = read_all(p);
  EXPECT_TRUE(after == before) << "the old checkpoint was damaged: " << after.size() << " bytes, "
                               << before.size() << " before";
  EXPECT_EQ(names(), std::set<std::string>{"model.safetensors"}) << "a temporary file remains";
  EXPECT_TRUE(same(load_safetensors(p), good));
  // A new file that cannot be completed is not created at all.
  EXPECT_NE(save_limited(path("new.safetensors")).find("no file was created"), std::string::npos);
  EXPECT_EQ(names(), std::set<std::string>{"model.safetensors"});
}

// Saving over a file replaces it (a new inode, renamed into place) rather
// than rewriting its bytes (was: the same inode, truncated and rewritten).
// A symbolic link is followed: the link stays and the file it points to is
// replaced, also when that file does not exist yet. A replaced file keeps its
// permission bits; a new one gets 0666 & ~umask.
TEST_F(SafetensorsDurability, SaveReplacesTheFile) {
  StateDict a, b;
  a["x"] = random_tensor({4}, 1);
  b["y"] = random_tensor({2, 3}, 2);
  const std::string p = path("model.safetensors");
  save_safetensors(p, a);
  const mode_t mask = umask(0);
  umask(mask);
  struct stat before, after;
  ASSERT_EQ(stat(p.c_str(), &before), 0);
  EXPECT_EQ(before.st_mode & 0777, 0666u & ~mask);
  ASSERT_EQ(chmod(p.c_str(), 0640), 0);
  save_safetensors(p, b);
  ASSERT_EQ(stat(p.c_str(), &after), 0);
  EXPECT_NE(after.st_ino, before.st_ino) << "written in place";
  EXPECT_EQ(after.st_mode & 0777, 0640u);
  EXPECT_TRUE(same(load_safetensors(p), b));
  if (geteuid() != 0) {  // root may write any file
    // A file the caller may not write is not replaced either.
    ASSERT_EQ(chmod(p.c_str(), 0440), 0);
    EXPECT_THROW_WITH(save_safetensors(p, a), IoError, "cannot open", "Permission denied");
    EXPECT_TRUE(same(load_safetensors(p), b));
    ASSERT_EQ(chmod(p.c_str(), 0640), 0);
  }

  const std::string link = path("link.safetensors");
  fs::create_symlink("model.safetensors", link);  // relative, as links often are
  save_safetensors(link, a);
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_TRUE(same(load_safetensors(p), a));
  ASSERT_EQ(stat(p.c_str(), &before), 0);
  EXPECT_NE(before.st_ino, after.st_ino) << "written in place";
  const std::string dangling = path("dangling.safetensors");
  fs::create_symlink(path("created.safetensors"), dangling);
  save_safetensors(dangling, b);
  EXPECT_TRUE(fs::is_symlink(dangling));
  EXPECT_TRUE(same(load_safetensors(path("created.safetensors")), b));
  EXPECT_EQ(names(), (std::set<std::string>{"model.safetensors", "link.safetensors",
                                            "dangling.safetensors", "created.safetensors"}));
}

// A reader loading while another thread saves sees the old file or the new
// one, never a mix (was: a truncated or half-written file, an IoError).
TEST_F(SafetensorsDurability, ConcurrentReaderSeesOldOrNew) {
  StateDict small, large;
  small["x"] = random_tensor({1000}, 1);
  large["x"] = random_tensor({64, 1024}, 2);
  large["y"] = random_tensor({3}, 3);
  const std::string p = path("model.safetensors");
  save_safetensors(p, small);
  std::atomic<bool> stop{false};
  std::atomic<int> saves{0};
  std::string writer_error;
  std::thread writer([&] {
    try {
      for (int i = 0; !stop.load(); ++i) {
        save_safetensors(p, i % 2 ? small : large);
        saves.fetch_add(1);
      }
    } catch (const std::exception& e) {
      writer_error = e.what();
    }
  });
  // 1.5 s and at least 20 saves (fsync may be slow), at most 5 s.
  const auto start = std::chrono::steady_clock::now();
  const auto done = [&] {
    const auto elapsed = std::chrono::steady_clock::now() - start;
    return (elapsed > std::chrono::milliseconds(1500) && saves.load() >= 20) ||
           elapsed > std::chrono::seconds(5);
  };
  int loads = 0, failures = 0;
  std::string first_failure;
  while (!done()) {
    std::string failure;
    try {
      const StateDict d = load_safetensors(p);
      if (!same(d, small) && !same(d, large)) failure = "neither dict";
    } catch (const IoError& e) {
      failure = e.what();
    }
    ++loads;
    if (!failure.empty() && failures++ == 0) first_failure = failure;
  }
  stop.store(true);
  writer.join();
  EXPECT_EQ(writer_error, "");
  EXPECT_EQ(failures, 0) << "of " << loads << " loads; the first: " << first_failure;
  EXPECT_GE(loads, 10);
  EXPECT_GE(saves.load(), 2);
  EXPECT_EQ(names(), std::set<std::string>{"model.safetensors"});
}

// FIFOs, sockets, devices and directories are refused by name and kind,
// without blocking, and a save leaves them as they were (was: open(2) blocked
// forever on a FIFO; a socket was "cannot open"; /dev/null read as "too
// short" and was written to; a directory was "cannot open" on save).
TEST_F(SafetensorsDurability, NonRegularFilesAreRefused) {
  const std::string fifo = path("fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string fifo_link = path("fifo_link");
  fs::create_symlink(fifo, fifo_link);
  const std::string socket_path = path("sock");
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  ASSERT_LT(socket_path.size(), sizeof(address.sun_path));
  std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const int sock = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(sock, 0);
  ASSERT_EQ(bind(sock, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
  const std::string directory = path("dir.safetensors");
  fs::create_directories(directory);

  StateDict dict;
  dict["x"] = random_tensor({4}, 1);
  const struct {
    std::string path;
    const char* kind;
  } cases[] = {{fifo, "is a FIFO"},
               {fifo_link, "is a FIFO"},
               {socket_path, "is a socket"},
               {"/dev/null", "is a character device"},
               {directory, "is a directory"}};
  for (const auto& c : cases) {
    const std::string p = c.path;
    const std::string loaded = outcome_within_5s([p] { load_safetensors(p); });
    EXPECT_EQ(loaded.rfind("IoError: load_safetensors: '" + p + "' " + c.kind, 0), 0u) << loaded;
    const std::string saved = outcome_within_5s([p, dict] { save_safetensors(p, dict); });
    EXPECT_EQ(saved.rfind("IoError: save_safetensors: '" + p + "' ", 0), 0u) << saved;
    EXPECT_NE(saved.find(c.kind), std::string::npos) << saved;
  }
  struct stat status;
  ASSERT_EQ(stat(fifo.c_str(), &status), 0);
  EXPECT_TRUE(S_ISFIFO(status.st_mode));
  EXPECT_TRUE(fs::is_symlink(fifo_link));
  ASSERT_EQ(stat(socket_path.c_str(), &status), 0);
  EXPECT_TRUE(S_ISSOCK(status.st_mode));
  ASSERT_EQ(stat("/dev/null", &status), 0);
  EXPECT_TRUE(S_ISCHR(status.st_mode));
  EXPECT_TRUE(fs::is_empty(directory));
  EXPECT_EQ(names(), (std::set<std::string>{"fifo", "fifo_link", "sock", "dir.safetensors"}));
  close(sock);
}

}  // namespace
}  // namespace attn
