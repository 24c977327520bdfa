#include "adapters/crypto/hmac.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/base/strings.h"
#include "openssl/crypto.h"
#include "openssl/evp.h"

namespace yrd {
namespace {

std::string Octal(unsigned mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", mode);
  return text;
}

}  // namespace

bool ConstantTimeEquals(std::string_view presented, std::string_view expected) {
  // Only the lengths may show: a wrong length is refused at once, the bytes never early.
  if (presented.size() != expected.size()) return false;
  return CRYPTO_memcmp(presented.data(), expected.data(), expected.size()) == 0;
}

// HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)). The two keyed prefixes are hashed once;
// each Mac copies those states, so a token costs two short SHA-256 runs and no allocation.
struct HmacSha256::Impl {
  EVP_MD_CTX* inner_keyed = nullptr;
  EVP_MD_CTX* outer_keyed = nullptr;
  EVP_MD_CTX* work = nullptr;
  ~Impl() {
    EVP_MD_CTX_free(inner_keyed);
    EVP_MD_CTX_free(outer_keyed);
    EVP_MD_CTX_free(work);
  }
};

HmacSha256::HmacSha256(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HmacSha256::~HmacSha256() = default;

absl::StatusOr<std::unique_ptr<HmacSha256>> HmacSha256::Create(std::string_view key) {
  constexpr size_t kBlockBytes = 64;
  std::array<uint8_t, kBlockBytes> block{};
  if (key.size() > kBlockBytes) {
    unsigned int length = 0;
    if (EVP_Digest(key.data(), key.size(), block.data(), &length, EVP_sha256(), nullptr) != 1) {
      return absl::InternalError("SHA-256 of the HMAC key failed");
    }
  } else {
    std::copy(key.begin(), key.end(), block.begin());
  }
  auto impl = std::make_unique<Impl>();
  impl->inner_keyed = EVP_MD_CTX_new();
  impl->outer_keyed = EVP_MD_CTX_new();
  impl->work = EVP_MD_CTX_new();
  if (impl->inner_keyed == nullptr || impl->outer_keyed == nullptr || impl->work == nullptr) {
    return absl::ResourceExhaustedError("cannot allocate digest contexts");
  }
  std::array<uint8_t, kBlockBytes> pad{};
  for (size_t i = 0; i < kBlockBytes; ++i) pad[i] = block[i] ^ 0x36;
  if (EVP_DigestInit_ex(impl->inner_keyed, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(impl->inner_keyed, pad.data(), pad.size()) != 1) {
    return absl::InternalError("HMAC inner key setup failed");
  }
  for (size_t i = 0; i < kBlockBytes; ++i) pad[i] = block[i] ^ 0x5c;
  if (EVP_DigestInit_ex(impl->outer_keyed, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(impl->outer_keyed, pad.data(), pad.size()) != 1) {
    return absl::InternalError("HMAC outer key setup failed");
  }
  return std::unique_ptr<HmacSha256>(new HmacSha256(std::move(impl)));
}

void HmacSha256::Mac(std::string_view message, std::array<uint8_t, 32>& mac_out) {
  std::array<uint8_t, 32> inner{};
  unsigned int length = 0;
  // These calls fail only on allocation failure inside OpenSSL; a token must never be wrong.
  const bool ok = EVP_MD_CTX_copy_ex(impl_->work, impl_->inner_keyed) == 1 &&
                  EVP_DigestUpdate(impl_->work, message.data(), message.size()) == 1 &&
                  EVP_DigestFinal_ex(impl_->work, inner.data(), &length) == 1 &&
                  EVP_MD_CTX_copy_ex(impl_->work, impl_->outer_keyed) == 1 &&
                  EVP_DigestUpdate(impl_->work, inner.data(), inner.size()) == 1 &&
                  EVP_DigestFinal_ex(impl_->work, mac_out.data(), &length) == 1;
  if (!ok) std::abort();
}

std::string HmacSha256::MacHex(std::string_view message) {
  std::array<uint8_t, 32> mac{};
  Mac(message, mac);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t byte : mac) {
    out.push_back(kHex[byte >> 4]);
    out.push_back(kHex[byte & 0xF]);
  }
  return out;
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path, std::string_view what) {
  if (path.empty()) return absl::InvalidArgumentError(Cat("no ", what, " is configured"));
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return absl::ErrnoToStatus(errno, Cat("cannot read ", what, " ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISREG(info.st_mode)) return absl::InvalidArgumentError(Cat(what, " ", path, " is not a regular file"));
  if ((info.st_mode & S_IROTH) != 0) {
    return absl::PermissionDeniedError(Cat(what, " ", path, " is readable by everyone; chmod 600 it"));
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int open_errno = errno;
    return absl::ErrnoToStatus(open_errno, Cat("cannot read ", what, " ", path, ": ", std::strerror(open_errno),
                                               " (clearingd runs as uid ", ::geteuid(), "; the file is owned by uid ",
                                               info.st_uid, " with mode ", Octal(info.st_mode & 07777), ")"));
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int read_errno = errno;
      ::close(fd);
      return absl::ErrnoToStatus(read_errno, Cat("cannot read ", what, " ", path, ": ", std::strerror(read_errno)));
    }
    if (got == 0) break;
    text.append(buffer, static_cast<size_t>(got));
  }
  ::close(fd);
  return text;
}

absl::StatusOr<std::string> ReadKeyFile(const std::string& path) {
  const absl::StatusOr<std::string> text = ReadSecretFile(path, "key file");
  if (!text.ok()) return text.status();
  std::string hex;
  for (char c : *text) {
    if (std::isspace(static_cast<unsigned char>(c))) continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(Cat("key file ", path, " must hold hex digits only"));
    }
    hex.push_back(c);
  }
  if (hex.size() % 2 != 0 || hex.size() / 2 < kHmacKeyBytesMin) {
    return absl::InvalidArgumentError(
        Cat("key file ", path, " must hold at least ", kHmacKeyBytesMin, " bytes as an even number of hex digits"));
  }
  std::string key;
  for (size_t i = 0; i < hex.size(); i += 2) key.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return key;
}

}  // namespace yrd
