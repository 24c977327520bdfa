#include "adapters/crypto/payload_sealer.h"

#include <array>

#include "adapters/crypto/hmac.h"
#include "engine/base/assert.h"
#include "engine/base/strings.h"
#include "openssl/evp.h"
#include "openssl/rand.h"

namespace yrd {
namespace {

constexpr uint8_t kSealVersion = 1;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;

}  // namespace

absl::StatusOr<std::string> DeriveKey(std::string_view secret, std::string_view label) {
  absl::StatusOr<std::unique_ptr<HmacSha256>> hmac = HmacSha256::Create(secret);
  if (!hmac.ok()) return hmac.status();
  std::array<uint8_t, 32> key{};
  (*hmac)->Mac(label, key);
  return std::string(reinterpret_cast<const char*>(key.data()), key.size());
}

struct AesGcmSealer::Impl {
  std::array<unsigned char, kSealKeyBytes> key{};
  EVP_CIPHER_CTX* context = nullptr;
  ~Impl() { EVP_CIPHER_CTX_free(context); }
};

AesGcmSealer::AesGcmSealer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AesGcmSealer::~AesGcmSealer() = default;

absl::StatusOr<std::unique_ptr<AesGcmSealer>> AesGcmSealer::Create(std::string_view key) {
  if (key.size() != kSealKeyBytes) {
    return absl::InvalidArgumentError(Cat("a sealing key has ", kSealKeyBytes, " bytes, not ", key.size()));
  }
  auto impl = std::make_unique<Impl>();
  std::copy(key.begin(), key.end(), impl->key.begin());
  impl->context = EVP_CIPHER_CTX_new();
  if (impl->context == nullptr) return absl::ResourceExhaustedError("cannot allocate an AES-GCM context");
  return std::unique_ptr<AesGcmSealer>(new AesGcmSealer(std::move(impl)));
}

void AesGcmSealer::Seal(std::string_view plain, std::string& sealed_out) {
  std::array<unsigned char, kNonceBytes> nonce{};
  // A failing random source or cipher is a broken machine, not input: the process stops.
  YRD_ASSERT(RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) == 1);
  sealed_out.assign(1, static_cast<char>(kSealVersion));
  sealed_out.append(reinterpret_cast<const char*>(nonce.data()), nonce.size());
  const size_t header_bytes = sealed_out.size();
  sealed_out.resize(header_bytes + plain.size() + kTagBytes);
  auto* cipher_text = reinterpret_cast<unsigned char*>(sealed_out.data() + header_bytes);
  EVP_CIPHER_CTX* context = impl_->context;
  int length = 0, final_length = 0;
  YRD_ASSERT(EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nullptr, impl_->key.data(), nonce.data()) == 1);
  YRD_ASSERT(EVP_EncryptUpdate(context, cipher_text, &length, reinterpret_cast<const unsigned char*>(plain.data()),
                               static_cast<int>(plain.size())) == 1);
  YRD_ASSERT(EVP_EncryptFinal_ex(context, cipher_text + length, &final_length) == 1);
  YRD_ASSERT(static_cast<size_t>(length + final_length) == plain.size());
  YRD_ASSERT(EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagBytes),
                                 cipher_text + plain.size()) == 1);
}

bool AesGcmSealer::Open(std::string_view sealed, std::string& plain_out) {
  plain_out.clear();
  if (sealed.size() < 1 + kNonceBytes + kTagBytes || static_cast<uint8_t>(sealed[0]) != kSealVersion) return false;
  const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data() + 1);
  const std::string_view cipher_text = sealed.substr(1 + kNonceBytes, sealed.size() - 1 - kNonceBytes - kTagBytes);
  std::array<unsigned char, kTagBytes> tag{};
  std::copy(sealed.end() - kTagBytes, sealed.end(), tag.begin());
  plain_out.resize(cipher_text.size());
  EVP_CIPHER_CTX* context = impl_->context;
  int length = 0, final_length = 0;
  const bool ok =
      EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nullptr, impl_->key.data(), nonce) == 1 &&
      EVP_DecryptUpdate(context, reinterpret_cast<unsigned char*>(plain_out.data()), &length,
                        reinterpret_cast<const unsigned char*>(cipher_text.data()),
                        static_cast<int>(cipher_text.size())) == 1 &&
      EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagBytes), tag.data()) == 1 &&
      EVP_DecryptFinal_ex(context, reinterpret_cast<unsigned char*>(plain_out.data()) + length, &final_length) == 1;
  if (!ok) plain_out.clear();
  return ok;
}

}  // namespace yrd
