#include "adapters/crypto/sha256.h"

#include <array>
#include <cstdlib>

#include "openssl/evp.h"

namespace yrd {

struct Sha256::Impl {
  EVP_MD_CTX* context = nullptr;
  ~Impl() { EVP_MD_CTX_free(context); }
};

Sha256::Sha256(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Sha256::~Sha256() = default;

absl::StatusOr<std::unique_ptr<Sha256>> Sha256::Create() {
  auto impl = std::make_unique<Impl>();
  impl->context = EVP_MD_CTX_new();
  if (impl->context == nullptr) return absl::ResourceExhaustedError("cannot allocate a SHA-256 context");
  if (EVP_DigestInit_ex(impl->context, EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("SHA-256 initialisation failed");
  }
  return std::unique_ptr<Sha256>(new Sha256(std::move(impl)));
}

// These calls fail only when OpenSSL cannot allocate; a MANIFEST must never carry a wrong hash,
// so the process stops rather than go on.
void Sha256::Update(std::string_view bytes) {
  if (EVP_DigestUpdate(impl_->context, bytes.data(), bytes.size()) != 1) std::abort();
}

std::string Sha256::FinishHex() {
  std::array<uint8_t, 32> digest{};
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(impl_->context, digest.data(), &length) != 1 || length != digest.size()) std::abort();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (const uint8_t byte : digest) {
    out.push_back(kHex[byte >> 4]);
    out.push_back(kHex[byte & 0xF]);
  }
  return out;
}

std::string Sha256Hex(std::string_view bytes) {
  absl::StatusOr<std::unique_ptr<Sha256>> hash = Sha256::Create();
  if (!hash.ok()) std::abort();
  (*hash)->Update(bytes);
  return (*hash)->FinishHex();
}

}  // namespace yrd
