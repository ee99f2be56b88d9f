From: Acme Robotics News <news@acme-robotics.example>
To: Alice Andersson <alice@example.com>
Subject: Acme Robotics News: our new gripper
Date: Wed, 18 Nov 2026 08:49:00 +0000
Message-ID: <c14fe5cf2341ffa7.53f72@acme-robotics.example>
List-Id: Acme Robotics News <acmeroboticsnews.acme-robotics.example>
List-Unsubscribe: <https://acme-robotics.example/u/6ff595f3>, <mailto:leave@acme-robotics.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Acme Robotics News: our new gripper

Read online: https://acme-robotics.example/issues/latest
Unsubscribe: https://acme-robotics.example/u
