// AesGcmSealer: the PayloadSealer (engine/store/records.h) over AES-256-GCM from OpenSSL, so that what
// the store keeps of a rejected message (its dead-letter copy) never holds a card number in
// clear. Sealed form: a version byte (1), a 12-byte random nonce, the ciphertext, the 16-byte
// authentication tag; Open refuses any byte changed and any other key. The key is derived from
// the card-token key (DeriveKey with kDeadLetterKeyLabel), so the operator manages one secret.
// Not thread-safe: each thread owns one.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/store/records.h"

namespace yrd {

inline constexpr size_t kSealKeyBytes = 32;
// The purposes keys are derived for; never change a label, or stored data can no longer be read.
inline constexpr std::string_view kDeadLetterKeyLabel = "yrd-clearing/dead-letter-payload/v1";
inline constexpr std::string_view kCardTokenKeyCheckLabel = "yrd-clearing/card-token-key-check/v1";

// A 32-byte key for one purpose from a secret: HMAC-SHA256 of the purpose's label under the
// secret (NIST SP 800-108 key derivation in counter mode, one block). Keys of different labels
// tell nothing about each other or the secret.
[[nodiscard]] absl::StatusOr<std::string> DeriveKey(std::string_view secret, std::string_view label);

class AesGcmSealer final : public PayloadSealer {
 public:
  // `key` must be kSealKeyBytes bytes.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<AesGcmSealer>> Create(std::string_view key);
  ~AesGcmSealer() override;

  void Seal(std::string_view plain, std::string& sealed_out) override;
  [[nodiscard]] bool Open(std::string_view sealed, std::string& plain_out) override;

 private:
  struct Impl;
  explicit AesGcmSealer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace yrd
